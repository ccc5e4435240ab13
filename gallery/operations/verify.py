"""Do rows and blobs agree? (manage.py verify)

One user at a time (memory grows with the largest library, not the whole server): the
keys their rows name (originals, variants, export zips, the blobs of their uploads in
flight) against the objects under `<user-id>/`. It reports:
- `missing`: a row whose object is gone (looked up again before it is reported, so a media
  deleted while we listed is not one);
- `orphan`: an object no row knows, older than UPLOAD_EXPIRY_HOURS (younger ones may be an
  upload between its bytes and its row); top-level folders of users that no longer exist;
- `size`: an object whose size is not the row's;
- `checksum` (with checksums=True): an original whose SHA-256 is not `Media.sha256`
  (an `uploading` media is skipped: its SHA-256 is the client's claim until the worker checks it);
- `variants`: a ready photo or video (or a track with cover art) without all its levels,
  counting levels whose object is missing. `manage.py regenerate --check-blobs --media ...` fixes it.
`orphans_delete` removes the orphans a report found, each looked up again first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.core.files.storage import Storage
from django.utils import timezone

from gallery.models import Export, Media, Upload, User, Variant
from gallery.storage import BlobInfo, blob_list, blob_size, blob_storage_sha256, is_s3, s3_client
from gallery.vault.crypto import ciphertext_size

# What processing makes for every picture (gallery.processing.images.LEVELS + SQUARE_LEVELS);
# videos have them from their poster, tracks from their cover art when they have one.
PICTURE_LEVELS = frozenset({"1", "2", "3", "4", "5", "6", "1s", "2s", "3s", "4s"})


@dataclass
class Finding:
    kind: str  # missing | orphan | size | checksum | variants
    key: str
    detail: str
    owner: str = ""
    media: str = ""


@dataclass
class VerifyReport:
    rows: int = 0
    objects: int = 0
    hashed: int = 0
    findings: list[Finding] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def as_dict(self) -> dict:
        counts = {kind: len(self.of_kind(kind)) for kind in ("missing", "orphan", "size", "checksum", "variants")}
        return {"rows": self.rows, "objects": self.objects, "hashed": self.hashed, "counts": counts,
                "findings": [asdict(f) for f in self.findings], "fix": fix_hints(self)}


def fix_hints(report: VerifyReport) -> list[str]:
    hints = []
    media = sorted({f.media for f in report.findings if f.kind == "variants"})
    if media:
        hints.append("manage.py regenerate --check-blobs --media " + " ".join(media))
    if report.of_kind("orphan"):
        hints.append("manage.py verify --delete-orphans (removes only the orphans it reports)")
    return hints


@dataclass
class _Row:
    size: int
    kind: str  # original | variant | export
    media: str
    sha256: str = ""
    level: str = ""


def _rows(user: User) -> dict[str, _Row]:
    rows: dict[str, _Row] = {}
    # A vault item's blobs are encrypted (docs/vault.md): their stored size is the ciphertext's,
    # and its row's sha256 is a keyed digest that no hash of the blob can match.
    originals = (Media.objects.filter(owner=user).exclude(original_key="")
                 .values_list("original_key", "size", "pk", "sha256", "status", "in_vault"))
    for key, size, pk, sha, status, vault in originals.iterator(chunk_size=5000):
        rows[key] = _Row(ciphertext_size(size) if vault else size, "original", str(pk),
                         "" if status == Media.Status.UPLOADING or vault else sha)
    variants = Variant.objects.filter(media__owner=user).values_list("storage_key", "size", "media_id", "level",
                                                                     "media__in_vault")
    for key, size, media_id, level, vault in variants.iterator(chunk_size=5000):
        rows[key] = _Row(ciphertext_size(size) if vault else size, "variant", str(media_id), level=level)
    for key, size, pk in Export.objects.filter(owner=user).exclude(key="").values_list("key", "size", "pk"):
        rows[key] = _Row(size, "export", str(pk))
    return rows


def upload_keys(user_id=None) -> set[str]:
    """The blobs uploads in flight hold: part files, S3 tails, targets, the partials of finals."""
    active = Upload.objects.filter(state=Upload.State.ACTIVE)
    if user_id is not None:
        active = active.filter(owner_id=user_id)
    keys: set[str] = set()
    for part, tail, target, partials in active.values_list("part_key", "tail_key", "target_key", "partials"):
        keys.update(k for k in (part, tail, target) if k)
        keys.update(p["key"] for p in partials or [] if p.get("key"))
    return keys


def _known(key: str) -> bool:
    """Whether any row names `key` now (asked again before an orphan is reported or deleted)."""
    if Media.objects.filter(original_key=key).exists() or Variant.objects.filter(storage_key=key).exists():
        return True
    if Export.objects.filter(key=key).exists():
        return True
    return key in upload_keys()


def storage_verify(*, storage: Storage, user: User | None = None, checksums: bool = False,
                   now: datetime | None = None, on_object: Callable[[BlobInfo], None] | None = None) -> VerifyReport:
    """Compare rows and objects of one user, or of every user; see the module."""
    now = now or timezone.now()
    young = now - timedelta(hours=settings.UPLOAD_EXPIRY_HOURS)
    report = VerifyReport()
    users = [user] if user is not None else User.objects.order_by("username").iterator()
    for owner in users:
        _verify_user(storage, owner, report, checksums=checksums, young=young, on_object=on_object)
    if user is None:
        known_ids = {str(pk) for pk in User.objects.values_list("pk", flat=True)}
        for name in top_level_names(storage):
            if name in known_ids:
                continue
            for blob in blob_list(storage, f"{name}/"):
                report.objects += 1
                if blob.modified <= young and not _known(blob.key):
                    report.findings.append(Finding("orphan", blob.key, "no user has this folder", "", ""))
    return report


def _verify_user(storage: Storage, owner: User, report: VerifyReport, *, checksums: bool, young: datetime,
                 on_object: Callable[[BlobInfo], None] | None) -> None:
    rows = _rows(owner)
    report.rows += len(rows)
    in_flight = upload_keys(owner.pk)
    seen: set[str] = set()
    for blob in blob_list(storage, f"{owner.pk}/"):
        report.objects += 1
        if on_object is not None:
            on_object(blob)
        row = rows.get(blob.key)
        if row is None:
            if blob.key not in in_flight and blob.modified <= young and not _known(blob.key):
                report.findings.append(Finding("orphan", blob.key, f"{blob.size} bytes, no row knows it",
                                               owner.username))
            continue
        seen.add(blob.key)
        if blob.size != row.size:
            report.findings.append(Finding("size", blob.key, f"{row.kind}: the row says {row.size} bytes, the "
                                           f"object has {blob.size}", owner.username, row.media))
        elif checksums and row.kind == "original" and row.sha256:
            report.hashed += 1
            actual = blob_storage_sha256(storage, blob.key)
            if actual != row.sha256:
                report.findings.append(Finding("checksum", blob.key, f"SHA-256 {actual}, the row says {row.sha256}",
                                               owner.username, row.media))
    gone: dict[str, set[str]] = {}
    for key, row in rows.items():
        if key in seen or blob_size(storage, key) is not None or not _still_named(key, row):
            continue
        report.findings.append(Finding("missing", key, f"{row.kind} of {row.size} bytes", owner.username, row.media))
        if row.kind == "variant":
            gone.setdefault(row.media, set()).add(row.level)
    _missing_variants(owner, rows, gone, report)


def _still_named(key: str, row: _Row) -> bool:
    if row.kind == "original":
        return Media.objects.filter(original_key=key).exists()
    if row.kind == "variant":
        return Variant.objects.filter(storage_key=key).exists()
    return _known(key)


def _missing_variants(owner: User, rows: dict[str, _Row], gone: dict[str, set[str]], report: VerifyReport) -> None:
    levels: dict[str, set[str]] = {}
    for row in rows.values():
        if row.kind == "variant":
            levels.setdefault(row.media, set()).add(row.level)
    ready = Media.objects.filter(owner=owner, status=Media.Status.READY).values_list("pk", "kind", "original_filename")
    for pk, kind, name in ready.iterator(chunk_size=5000):
        have = levels.get(str(pk), set()) - gone.get(str(pk), set())
        expected = kind in (Media.Kind.IMAGE, Media.Kind.VIDEO) or (
            kind == Media.Kind.AUDIO and levels.get(str(pk), set()) & PICTURE_LEVELS)
        lacking = sorted(PICTURE_LEVELS - have) if expected else []
        if lacking:
            report.findings.append(Finding("variants", name, f"ready {kind} without level(s) {', '.join(lacking)}",
                                           owner.username, str(pk)))


def top_level_names(storage: Storage) -> list[str]:
    """The first path segment of every key (one per user that has blobs)."""
    if is_s3(storage):
        names = []
        paginator = s3_client(storage).get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=storage.bucket_name, Delimiter="/"):
            names += [p["Prefix"].rstrip("/") for p in page.get("CommonPrefixes", [])]
            names += [o["Key"] for o in page.get("Contents", [])]
        return names
    root = Path(storage.location)
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def orphans_delete(*, storage: Storage, findings: Iterable[Finding]) -> int:
    """Delete the orphans a report found, each only if still no row knows it."""
    deleted = 0
    for finding in findings:
        if finding.kind == "orphan" and not _known(finding.key):
            storage.delete(finding.key)
            deleted += 1
    return deleted
