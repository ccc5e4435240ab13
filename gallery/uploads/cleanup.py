"""Cleanup of abandoned uploads (manage.py cleanup_uploads, and the worker every 15 minutes).

uploads_cleanup() expires what nobody touched for UPLOAD_EXPIRY_HOURS (finished tus
partials no final upload took included), finishes uploads whose bytes all arrived but
whose completion was interrupted, and sweeps blobs no row knows of. It never touches an
upload that is live (not expired, or leased by a PATCH).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from gallery.exceptions import NotFound, UploadBusy, UploadExpired
from gallery.models import Upload
from gallery.storage import is_s3, media_storage
from gallery.uploads import tus
from gallery.uploads.lifecycle import STORAGE_ERRORS, s3_client, upload_close

log = logging.getLogger(__name__)

# Rows of finished uploads are kept this long after they expire, so a client asking about
# one it sent earlier still gets 410 (expired) or its media id rather than 404.
FINISHED_ROW_RETENTION = timedelta(days=7)


@dataclass
class CleanupReport:
    expired: int = 0
    completed: int = 0
    rows_deleted: int = 0
    orphans: int = 0
    errors: list[str] = field(default_factory=list)


def uploads_cleanup(*, now: datetime | None = None) -> CleanupReport:
    """Expire abandoned uploads, finish complete ones, forget old rows, sweep orphan blobs."""

    now = now or timezone.now()
    report = CleanupReport()
    stale = Upload.objects.filter(state=Upload.State.ACTIVE, expires_at__lte=now).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lte=now))
    for upload in stale.iterator():
        try:
            if upload.kind == Upload.Kind.TUS and upload.survives_expiry:
                # Every byte arrived but completion was cut short: finish it, never discard it.
                # (A finished partial that no final upload took is expired like any other.)
                tus.upload_finish(upload=upload)
                report.completed += 1
            elif upload_close(upload_id=upload.pk, state=Upload.State.EXPIRED):
                report.expired += 1
        except (UploadBusy, NotFound, UploadExpired):
            continue  # it came alive again, or someone else finished it
        except Exception as exc:  # one broken upload must not stop the sweep
            log.exception("cleanup of upload %s failed", upload.pk)
            report.errors.append(f"{upload.pk}: {exc}")
    finished = [Upload.State.COMPLETED, Upload.State.TERMINATED, Upload.State.EXPIRED, Upload.State.FAILED]
    report.rows_deleted, _ = Upload.objects.filter(
        state__in=finished, updated_at__lte=now - FINISHED_ROW_RETENTION).delete()
    try:
        report.orphans = _sweep_orphans(now=now)
    except STORAGE_ERRORS as exc:
        log.warning("orphan sweep failed: %s", exc)
        report.errors.append(f"orphan sweep: {exc}")
    return report


def _sweep_orphans(*, now: datetime) -> int:
    """Delete upload blobs that no active upload knows of and that are older than the expiry
    (a process died between creating a blob and recording it)."""
    cutoff = now - timedelta(hours=settings.UPLOAD_EXPIRY_HOURS)
    active = Upload.objects.filter(state=Upload.State.ACTIVE)
    storage = media_storage()
    removed = 0
    concat_keys = _concat_keys(active)
    if is_s3(storage):
        client, bucket = s3_client()
        known_ids = set(active.exclude(s3_upload_id="").values_list("s3_upload_id", flat=True))
        known_tails = set(active.exclude(tail_key="").values_list("tail_key", flat=True)) | concat_keys
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for item in page.get("Uploads", []):
                if item["UploadId"] in known_ids or item["Initiated"] > cutoff:
                    continue
                # Completion may have committed a row since we read known_ids: look again.
                if Upload.objects.filter(s3_upload_id=item["UploadId"], state=Upload.State.ACTIVE).exists():
                    continue
                client.abort_multipart_upload(Bucket=bucket, Key=item["Key"], UploadId=item["UploadId"])
                removed += 1
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                key = item["Key"]
                if "/library/uploads/" not in key or key in known_tails or item["LastModified"] > cutoff:
                    continue
                if (Upload.objects.filter(Q(tail_key=key) | Q(target_key=key), state=Upload.State.ACTIVE).exists()
                        or key in _concat_keys(Upload.objects.filter(state=Upload.State.ACTIVE))):
                    continue
                client.delete_object(Bucket=bucket, Key=key)
                removed += 1
        return removed
    root = Path(storage.location)
    known = set(active.exclude(part_key="").values_list("part_key", flat=True)) | concat_keys
    for path in root.glob("*/library/uploads/*"):
        key = path.relative_to(root).as_posix()
        if key in known or path.stat().st_mtime > cutoff.timestamp():
            continue
        if (Upload.objects.filter(part_key=key, state=Upload.State.ACTIVE).exists()
                or key in _concat_keys(Upload.objects.filter(state=Upload.State.ACTIVE))):
            continue
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def _concat_keys(active) -> set[str]:
    """The bytes of active partials and of the partials a pending final upload has taken.

    One query: a final taking its partials (which stop being active) in between two reads
    must not make their bytes look like orphans."""
    keys: set[str] = set()
    rows = active.exclude(concat=Upload.Concat.NONE).values_list("concat", "target_key", "partials")
    for concat, target_key, partials in rows:
        if concat == Upload.Concat.PARTIAL:
            keys.add(target_key)
        else:
            keys.update(p["key"] for p in partials)
    return keys


def uploads_expire(*, upload_ids, now: datetime | None = None) -> tuple[int, int]:
    """Expire these active uploads now (the admin's action): their reservations are released and
    their bytes deleted. One receiving bytes at this moment (leased by a PATCH) is left alone.
    Returns (expired, left alone)."""
    now = now or timezone.now()
    expired = busy = 0
    for upload in Upload.objects.filter(pk__in=list(upload_ids), state=Upload.State.ACTIVE):
        if upload.lease_until is not None and upload.lease_until > now:
            busy += 1
        elif upload_close(upload_id=upload.pk, state=Upload.State.EXPIRED, error="expired by an administrator"):
            expired += 1
    return expired, busy
