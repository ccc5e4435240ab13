"""manage.py import_folder USER PATH: bring a folder tree or a Google Takeout into a library.

Files are hashed on a thread pool ahead of the import; a file whose SHA-256 the user
already has is a duplicate (nothing stored twice; it still joins its folder's albums). A
journal under the data dir remembers each file done (path, size, mtime, SHA-256), so a
rerun skips them without reading them again and picks up where the last run stopped.
Sidecars (IMG_1.jpg.xmp, IMG_1.xmp, Takeout's JSON) go with the media into
Media.details["sidecar"], which processing reads (docs/metadata.md). Album folders
(Takeout's metadata.json, or every folder with --albums-from-folders) become albums;
Takeout's `favorited` puts a media in Favourites. Exit status 1 when a file failed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from gallery.exceptions import ChipmunkError
from gallery.models import Album, Media, User
from gallery.processing.sidecars import (
    JsonIndex,
    album_title,
    is_sidecar_name,
    merged,
    takeout_sidecar,
    xmp_sidecar,
    xmp_sidecar_for,
)
from gallery.services.media import media_ingest
from gallery.services.metadata import album_for_import, media_add_to_albums, media_attach_sidecar
from gallery.storage import sha256_of


@dataclass
class Folder:
    names: set[str]
    json: JsonIndex
    album: str | None


@dataclass
class Hashed:
    path: Path
    size: int = 0
    mtime_ns: int = 0
    sha256: str | None = None
    error: str | None = None
    from_journal: bool = False


class Command(BaseCommand):
    help = "Import a folder tree or a Google Takeout into a user's library (duplicates are skipped)."

    def add_arguments(self, parser):
        parser.add_argument("target", nargs="+", metavar="USER PATH",
                            help="the user and the folder (or only the folder, with --user)")
        parser.add_argument("--user", help="the user (when only the folder is given)")
        parser.add_argument("--no-recursive", action="store_true", help="only the folder itself")
        parser.add_argument("--albums-from-folders", action="store_true",
                            help="each folder with files becomes an album named after the folder")
        parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                            help="threads hashing files ahead of the import")
        parser.add_argument("--quiet", action="store_true", help="print failures only")

    def handle(self, *args, target, user, no_recursive, albums_from_folders, workers, quiet, **options):
        if len(target) == 2 and user is None:
            user, folder = target
        elif len(target) == 1 and user:
            folder = target[0]
        else:
            raise CommandError("give USER PATH (or PATH --user USER)")
        root = Path(folder)
        if not root.is_dir():
            raise CommandError(f"{folder} is not a folder")
        owner = User.objects.filter(username=user).first()
        if owner is None:
            raise CommandError(f"no user named {user!r}")
        self.progress = not quiet and sys.stderr.isatty()
        files, folders = self._walk(root, recursive=not no_recursive, albums_from_folders=albums_from_folders)
        journal = Journal(owner, root)
        known = set(Media.objects.filter(owner=owner).exclude(status=Media.Status.UPLOADING)
                    .values_list("sha256", flat=True))
        counts = {"imported": 0, "duplicates": 0, "already imported": 0, "failed": 0}
        failures: list[tuple[Path, str]] = []
        albums: dict[str, Album] = {}
        pool = ThreadPoolExecutor(max_workers=max(1, workers))
        try:
            hashed = pool.map(lambda p: _hash(p, root, journal, known), files)
            for done, item in enumerate(hashed, start=1):
                status, reason = self._import(owner, item, folders[item.path.parent], known, albums, journal)
                counts[status] += 1
                if status == "failed":
                    failures.append((item.path, reason))
                    self.stderr.write(f"failed\t{item.path}\t{reason}")
                elif not quiet and not self.progress:
                    self.stdout.write(f"{status}\t{item.path}")
                if self.progress:
                    self._bar(done, len(files))
                if reason.startswith("quota"):
                    break
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        journal.close()
        if self.progress:
            sys.stderr.write("\n")
        if not quiet:
            self.stdout.write(", ".join(f"{n} {k}" for k, n in counts.items()))
            for path, reason in failures:
                self.stdout.write(f"  failed: {path}: {reason}")
        if failures:
            raise CommandError(f"{len(failures)} file(s) failed", returncode=1)

    def _walk(self, root: Path, *, recursive: bool, albums_from_folders: bool) -> tuple[list[Path], dict]:
        files: list[Path] = []
        folders: dict[Path, Folder] = {}
        for current, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
            here = Path(current)
            visible = {n for n in names if not n.startswith(".")}
            title = album_title(here) if "metadata.json" in visible else None
            if title is None and albums_from_folders and here != root:
                title = here.name
            folders[here] = Folder(names=visible, json=JsonIndex.of(visible), album=title)
            files += [here / n for n in sorted(visible) if not is_sidecar_name(n) and (here / n).is_file()]
        return files, folders

    def _import(self, owner: User, item: Hashed, folder: Folder, known: set[str],
                albums: dict[str, Album], journal: Journal) -> tuple[str, str]:
        """(what happened, why it failed) for one file."""
        if item.error:
            return "failed", item.error
        sidecar = self._sidecar(item.path, folder)
        targets = []
        if folder.album:
            if folder.album not in albums:
                albums[folder.album] = album_for_import(owner=owner, title=folder.album)
            targets.append(albums[folder.album])
        favourite = bool(sidecar.get("favourite"))
        if item.sha256 in known:
            # The same photo in a Takeout year folder and in an album folder: stored once, in the album.
            # A file an earlier run finished got its sidecar then; only albums may be new
            # (--albums-from-folders on a rerun).
            fresh = sidecar and not item.from_journal
            media = None
            if targets or favourite or fresh:
                media = Media.objects.same_bytes(owner_id=owner.pk, sha256=item.sha256).first()
            if media is not None:
                media_add_to_albums(media=media, albums=targets, favourite=favourite)
                if fresh:
                    media_attach_sidecar(media=media, sidecar=sidecar)
            if not item.from_journal:
                journal.record(item)
            return ("already imported" if item.from_journal else "duplicates"), ""
        try:
            with open(item.path, "rb") as fh:
                stat = os.fstat(fh.fileno())
                # Hashed a moment ago on another thread: if the file changed since, hash it again.
                same = (stat.st_size, stat.st_mtime_ns) == (item.size, item.mtime_ns)
                result = media_ingest(owner=owner, stream=fh, size=stat.st_size, filename=item.path.name,
                                      file_modified_at=datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc),
                                      sha256=item.sha256 if same else None,
                                      details={"sidecar": sidecar} if sidecar else None)
        except ChipmunkError as exc:
            return "failed", ("quota exceeded, import stopped: " if exc.code == "quota_exceeded" else "") + exc.detail
        except OSError as exc:
            return "failed", str(exc)
        media_add_to_albums(media=result.media, albums=targets, favourite=favourite)
        item.sha256 = result.media.sha256
        known.add(item.sha256)
        journal.record(item)
        return ("imported" if result.created else "duplicates"), ""

    def _sidecar(self, path: Path, folder: Folder) -> dict[str, Any]:
        parts = []
        xmp = xmp_sidecar_for(path, folder.names)
        if xmp:
            parts.append((xmp, xmp_sidecar(path.parent / xmp)))
        takeout = folder.json.sidecar_for(path.name)
        if takeout:
            parts.append((takeout, takeout_sidecar(path.parent / takeout)))
        return merged(*parts)

    def _bar(self, done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        sys.stderr.flush()


def _hash(path: Path, root: Path, journal: Journal, known: set[str]) -> Hashed:
    """Size, mtime and SHA-256 of a file (runs on the pool); a file the journal already has
    with the same size and mtime, and whose bytes the user still has, is not read again."""
    item = Hashed(path)
    try:
        stat = path.stat()
        item.size, item.mtime_ns = stat.st_size, stat.st_mtime_ns
        remembered = journal.done.get(str(path.relative_to(root)))
        if remembered and remembered[:2] == [item.size, item.mtime_ns] and remembered[2] in known:
            item.sha256, item.from_journal = remembered[2], True
            return item
        with open(path, "rb") as fh:
            item.sha256 = sha256_of(fh)
    except OSError as exc:
        item.error = str(exc)
    return item


class Journal:
    """Files done by earlier runs of this import (same user, same folder): JSON lines of
    [path, size, mtime_ns, sha256] under $CHIPMUNK_DATA_DIR/imports/, appended as each
    file is done, so an interrupted run loses at most the file it was on."""

    def __init__(self, owner: User, root: Path) -> None:
        self.root = root
        folder = Path(settings.DATA_DIR) / "imports"
        folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
        self.path = folder / f"{owner.pk}-{name}.jsonl"
        self.done: dict[str, list] = dict(_entries(self.path))
        self._fh = open(self.path, "a", encoding="utf-8")

    def record(self, item: Hashed) -> None:
        entry = [str(item.path.relative_to(self.root)), item.size, item.mtime_ns, item.sha256]
        self._fh.write(json.dumps(entry) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _entries(path: Path) -> Iterator[tuple[str, list]]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                name, size, mtime_ns, sha256 = json.loads(line)
            except (ValueError, TypeError):
                continue  # a line cut by a crash
            yield name, [size, mtime_ns, sha256]
