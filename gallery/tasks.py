"""Job handlers: each takes ids, loads, and calls a service. Safe to run twice."""

from __future__ import annotations

import logging
from typing import Any

from gallery.delivery.blobcache import forget_cached
from gallery.jobs import job, periodic
from gallery.processing import pipeline as processing
from gallery.services import changes, exports, trash
from gallery.uploads import cleanup
from gallery.uploads import direct as direct_uploads
from gallery.vault import blobs as vault_blobs
from gallery.vault import jobkeys

log = logging.getLogger(__name__)


def _processing_failed(payload: dict[str, Any], error: str) -> None:
    jobkeys.job_key_drop(vault_job=payload.get("vault_job"))
    processing.media_mark_failed(media_id=payload["media_id"], error=f"processing failed: {error}")


@job("process_media", on_failure=_processing_failed)
def process_media(*, media_id: str, vault_job: str | None = None, vault_key: str | None = None) -> None:
    # A vault item comes with a one-time key (gallery.vault.jobkeys), dropped once done.
    file_key = None
    if vault_job:
        file_key = jobkeys.job_key_open(media_id=media_id, vault_job=vault_job, vault_key=vault_key or "")
        if file_key is None:
            processing.media_mark_failed(media_id=media_id, error="the one-time key for processing this vault "
                                         "item expired before a worker took the job")
            return
    processing.media_process(media_id=media_id, file_key=file_key)
    jobkeys.job_key_drop(vault_job=vault_job)


@job("vault_delete_blobs")
def vault_delete_blobs(*, blobs: list[list], owner: str) -> None:
    """The blobs a vault move left behind (after its commit): deleted, and forgotten by the block cache."""
    vault_blobs.delete_blobs(key for key, _ in blobs)
    forget_cached(blobs=[(key, size) for key, size in blobs], owner=owner)


def _verification_failed(payload: dict[str, Any], error: str) -> None:
    processing.media_mark_failed(media_id=payload["media_id"], error=f"checking the uploaded bytes failed: {error}")


@job("verify_direct_upload", on_failure=_verification_failed)
def verify_direct_upload(*, media_id: str) -> None:
    direct_uploads.direct_upload_verify(media_id=media_id)


@periodic("uploads_cleanup", every_seconds=15 * 60)
def uploads_cleanup() -> None:
    report = cleanup.uploads_cleanup()
    if report.expired or report.completed or report.orphans or report.errors:
        log.info("uploads cleanup: %s", report)


def _export_failed(payload: dict[str, Any], error: str) -> None:
    exports.export_mark_failed(export_id=payload["export_id"], error=f"building the export failed: {error}")


@job("export_build", on_failure=_export_failed)
def export_build(*, export_id: str) -> None:
    exports.export_build(export_id=export_id)


@periodic("exports_prune", every_seconds=3600)
def exports_prune() -> None:
    exports.exports_prune()


@periodic("sync_prune", every_seconds=6 * 3600)
def sync_prune() -> None:
    removed = changes.changes_prune()
    if removed:
        log.info("sync: forgot %d tombstones older than SYNC_TOMBSTONE_DAYS", removed)


@periodic("trash_purge", every_seconds=3600)
def trash_purge() -> None:
    purged = trash.trash_purge()
    if purged:
        log.info("trash purge: %s media deleted for good", purged)
