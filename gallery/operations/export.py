"""A user's library as one zip, written in constant memory (manage.py export, the export job).

Layout:
  YYYY/MM/<name>        the original as uploaded, in the month it was taken (local time of
                        capture); a name taken in that folder gets " (2)", " (3)"... (compared
                        without case, so the zip unpacks on any file system)
  YYYY/MM/<name>.json   what we know about it: dates with their offset, GPS, place, camera,
                        tags, albums, description and rating when there are
  albums.json           every album with the paths of its items in the zip
  missing.json          only when an original is not in the storage (see manage.py verify)
The zip is ZIP64 and streamed: each original is copied in 1 MiB chunks from the storage into
the archive, which may be a file or a write-only stream (S3 multipart, a socket). What stays
in memory grows with the number of media (their paths, for albums.json), never their bytes.
Vault items are not exported (not built: they would go in decrypted, only while the vault
is unlocked and the user asks for it). Trashed media are left out, as are uploads whose
bytes are still being checked.
"""

from __future__ import annotations

import json
import posixpath
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from botocore.exceptions import ClientError
from django.core.files.storage import Storage

from gallery.models import Album, Media, User
from gallery.storage import HASH_CHUNK, blob_reader

FORMAT_VERSION = 1


@dataclass
class ExportStats:
    media: int = 0
    bytes: int = 0
    missing: list[dict] = field(default_factory=list)  # media whose original is not in the storage


def _zip_time(media: Media) -> tuple[int, int, int, int, int, int]:
    local = media.taken_at_local()
    if local.year < 1980:  # the zip format starts in 1980
        return (1980, 1, 1, 0, 0, 0)
    return (min(local.year, 2107), local.month, local.day, local.hour, local.minute, local.second)


def _unique(folder: str, name: str, taken: set[str]) -> str:
    stem, ext = posixpath.splitext(name)
    candidate, n = name, 1
    while f"{folder}/{candidate}".lower() in taken or f"{folder}/{candidate}.json".lower() in taken:
        n += 1
        candidate = f"{stem} ({n}){ext}"
    path = f"{folder}/{candidate}"
    taken.update({path.lower(), f"{path}.json".lower()})
    return path


def _safe_name(name: str) -> str:
    name = name.replace("/", "_").replace("\\", "_").strip().lstrip(".")
    return name or "file"


def media_document(media: Media, *, path: str, albums: list[str]) -> dict:
    """The JSON that goes beside an original in the zip."""
    local = media.taken_at_local()
    doc = {
        "format": FORMAT_VERSION,
        "id": str(media.pk),
        "file": posixpath.basename(path),
        "original_filename": media.original_filename,
        "kind": media.kind,
        "content_type": media.content_type,
        "size": media.size,
        "sha256": media.sha256,
        "taken_at": local.isoformat(),
        "taken_at_utc": media.taken_at.isoformat(),
        "taken_at_offset_minutes": int(local.utcoffset().total_seconds() // 60),
        "taken_at_estimated": media.taken_at_estimated,
        "uploaded_at": media.created_at.isoformat(),
        "width": media.width, "height": media.height, "duration": media.duration,
        "gps": None if media.latitude is None else {
            "latitude": media.latitude, "longitude": media.longitude, "altitude": media.altitude},
        "place": {"city": media.place_city, "region": media.place_region, "country": media.place_country},
        "camera": {"make": media.camera_make, "model": media.camera_model},
        "tags": sorted(t.name for t in media.tags.all()),
        "albums": albums,
    }
    description = media.description or (media.details or {}).get("description", "")
    if description:
        doc["description"] = description
    if (media.details or {}).get("rating") is not None:
        doc["rating"] = media.details["rating"]
    return doc


def export_write(*, user: User, storage: Storage, out: IO[bytes],
                 on_media: Callable[[Media], None] | None = None) -> ExportStats:
    """Write `user`'s library as a zip to `out` (seekable or not); see the module."""
    stats = ExportStats()
    taken: set[str] = set()
    album_items: dict[int, list[str]] = {}
    # in_vault=False on top of the visibility rule: when an unlocked vault widens visible_to,
    # vault items must still be left out until the vault exports them itself.
    media_qs = (Media.objects.visible_to(user).filter(in_vault=False).exclude(status=Media.Status.UPLOADING)
                .exclude(original_key="")
                .select_related("owner").prefetch_related("tags", "albums").order_by("taken_at", "id"))
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for media in media_qs.iterator(chunk_size=200):
            local = media.taken_at_local()
            path = _unique(f"{local.year:04d}/{local.month:02d}", _safe_name(media.original_filename), taken)
            info = zipfile.ZipInfo(path, date_time=_zip_time(media))
            info.compress_type = zipfile.ZIP_STORED  # photos and videos are compressed already
            info.file_size = media.size
            try:
                with blob_reader(storage, media.original_key) as blob, \
                        archive.open(info, "w", force_zip64=True) as entry:
                    while chunk := blob.read(HASH_CHUNK):
                        entry.write(chunk)
            except (FileNotFoundError, ClientError) as exc:
                if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") != "NoSuchKey":
                    raise
                # A lost original must not keep the rest from leaving: listed in missing.json.
                stats.missing.append({"id": str(media.pk), "original_filename": media.original_filename,
                                      "sha256": media.sha256})
                continue
            albums = []
            for album in media.albums.all():
                album_items.setdefault(album.pk, []).append(path)
                albums.append(album.title)
            doc = media_document(media, path=path, albums=sorted(albums))
            meta = zipfile.ZipInfo(f"{path}.json", date_time=_zip_time(media))
            meta.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(meta, json.dumps(doc, indent=1, ensure_ascii=False))
            stats.media += 1
            stats.bytes += media.size
            if on_media is not None:
                on_media(media)
        albums_doc = [
            {"title": album.title, "favourites": album.is_favourites, "created_at": album.created_at.isoformat(),
             "items": album_items.get(album.pk, [])}
            for album in Album.objects.filter(owner=user).order_by("created_at", "id")
        ]
        archive.writestr(zipfile.ZipInfo("albums.json", date_time=(1980, 1, 1, 0, 0, 0)),
                         json.dumps({"format": FORMAT_VERSION, "albums": albums_doc}, indent=1, ensure_ascii=False),
                         compress_type=zipfile.ZIP_DEFLATED)
        if stats.missing:
            archive.writestr(zipfile.ZipInfo("missing.json", date_time=(1980, 1, 1, 0, 0, 0)),
                             json.dumps({"missing": stats.missing}, indent=1, ensure_ascii=False),
                             compress_type=zipfile.ZIP_DEFLATED)
    return stats
