"""Moving every blob from the configured storage to another (manage.py migrate_storage).

Every object of the source is copied under the same key, as it is (originals, variants,
upload parts, exports, vault ciphertext: bytes are never interpreted), then checked on the
target: its size for every object, its SHA-256 against `Media.sha256` for originals (read
back from the target, not trusted from the copy). What was checked is written to a journal
next to the data (`DATA_DIR/migrate_storage-<target>.journal`), so a rerun skips it without
reading it again; an object whose size changed since is copied again. The source is listed
again after each pass until a pass finds nothing new, so uploads that land during a long
copy are caught; for a cut-over with no gap at all, stop the web and worker processes and
run it once more (it copies only what is new), then switch.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.files.storage import Storage, storages

from gallery.models import Media
from gallery.storage import (
    HASH_CHUNK,
    STORAGE_ERRORS,
    BlobInfo,
    blob_list,
    blob_reader,
    blob_size,
    blob_storage_sha256,
    blob_writer,
    is_s3,
    s3_client,
)

MAX_PASSES = 5


@dataclass
class MigrationReport:
    copied: int = 0
    copied_bytes: int = 0
    skipped: int = 0
    passes: int = 0
    would_copy: list[str] = field(default_factory=list)  # --dry-run
    problems: list[str] = field(default_factory=list)


def target_storage(config: dict) -> Storage:
    """A storage built from a STORAGES entry (config.settings.s3_storage_config / local_storage_config)."""
    return storages.create_storage(config)


def describe(storage: Storage) -> str:
    if is_s3(storage):
        endpoint = s3_client(storage).meta.endpoint_url
        return f"s3 {endpoint} bucket {storage.bucket_name}"
    return f"local {Path(storage.location).resolve()}"


class _Hashing:
    """A read-only stream that counts and hashes what passes through it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.digest = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(HASH_CHUNK if size is None or size < 0 else size)
        self.digest.update(data)
        self.count += len(data)
        return data


def _write(target: Storage, key: str, stream: _Hashing, content_type: str) -> None:
    """Write a blob under `key`, replacing one left by an interrupted run; never half a file
    under the final name (gallery.storage.blob_writer)."""
    with blob_writer(target, key, content_type=content_type) as out:
        while chunk := stream.read(HASH_CHUNK):
            out.write(chunk)


class Journal:
    """Keys checked on the target and their size, one `size<TAB>key` line each, appended as we go."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.sizes: dict[str, int] = {}
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                size, _, key = line.partition("\t")
                if key and size.isdigit():
                    self.sizes[key] = int(size)
        self._fh = open(path, "a") if path is not None else None

    def verified(self, blob: BlobInfo, on_target: dict[str, int]) -> bool:
        # Checked before, and still there at that size (a wiped target is copied again).
        return self.sizes.get(blob.key) == blob.size == on_target.get(blob.key)

    def record(self, key: str, size: int) -> None:
        self.sizes[key] = size
        if self._fh is not None:
            self._fh.write(f"{size}\t{key}\n")
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def journal_path(target: Storage) -> Path:
    name = hashlib.sha256(describe(target).encode()).hexdigest()[:12]
    return Path(settings.DATA_DIR) / f"migrate_storage-{name}.journal"


def storage_migrate(*, source: Storage, target: Storage, dry_run: bool = False, journal: Path | None = None,
                    on_blob: Callable[[BlobInfo], None] | None = None) -> MigrationReport:
    """Copy every blob of `source` to `target` under the same key and check each copy; see the module."""
    if describe(source) == describe(target):
        raise ValueError(f"the target is the configured storage itself ({describe(source)})")
    if not is_s3(source) and not is_s3(target):
        a, b = Path(source.location).resolve(), Path(target.location).resolve()
        if a in b.parents or b in a.parents:
            raise ValueError(f"one folder holds the other ({a}, {b}): copies would be copied again")
    report = MigrationReport()
    originals = {key: (sha, ctype) for key, sha, ctype, status in Media.objects.exclude(original_key="")
                 .values_list("original_key", "sha256", "content_type", "status").iterator(chunk_size=5000)
                 # An uploading media's SHA-256 is the client's claim until the worker checks it.
                 if status != Media.Status.UPLOADING}
    log = Journal(None if dry_run else journal)
    on_target = {blob.key: blob.size for blob in blob_list(target)}
    try:
        for _ in range(MAX_PASSES):
            report.passes += 1
            work = 0
            for blob in blob_list(source):
                if log.verified(blob, on_target):
                    continue
                work += 1
                if dry_run:
                    report.would_copy.append(blob.key)
                    continue
                expected, ctype = originals.get(blob.key, (None, None))
                try:
                    problem = _migrate_one(source, target, blob, expected, ctype, on_target, log, report)
                except STORAGE_ERRORS as exc:
                    problem = f"{blob.key}: {type(exc).__name__}: {exc}"
                if problem:
                    report.problems.append(problem)
                if on_blob is not None:
                    on_blob(blob)
            if not work or dry_run or report.problems:
                break
        else:
            report.problems.append(f"the source still changed after {MAX_PASSES} passes: stop the server "
                                   "and run the command again")
    finally:
        log.close()
    return report


def _migrate_one(source: Storage, target: Storage, blob: BlobInfo, expected: str | None, ctype: str | None,
                 on_target: dict[str, int], log: Journal, report: MigrationReport) -> str | None:
    """Copy one blob unless the target already holds it checked; returns a problem or None."""
    if on_target.get(blob.key) == blob.size and blob.key not in log.sizes and (
            expected is None or blob_storage_sha256(target, blob.key) == expected):
        log.record(blob.key, blob.size)  # an earlier run copied it; now it is checked too
        report.skipped += 1
        return None
    with blob_reader(source, blob.key) as stream:
        reader = _Hashing(stream)
        _write(target, blob.key, reader, ctype or mimetypes.guess_type(blob.key)[0] or "application/octet-stream")
    copied_size = on_target[blob.key] = blob_size(target, blob.key)
    report.copied += 1
    report.copied_bytes += reader.count
    if copied_size != reader.count:
        return f"{blob.key}: {reader.count} bytes read, {copied_size} on the target"
    if expected is not None:
        if reader.digest.hexdigest() != expected:
            return f"{blob.key}: the source does not match its SHA-256 (damaged before the copy; see manage.py verify)"
        if blob_storage_sha256(target, blob.key) != expected:
            return f"{blob.key}: the copy does not match its SHA-256"
    log.record(blob.key, reader.count)
    return None
