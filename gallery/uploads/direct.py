"""Direct-to-object-store uploads: the client PUTs parts to presigned S3 URLs, we never see the bytes.

1. direct_upload_create reserves the size against the quota (as tus does), starts a
   multipart upload at the original's key and presigns one URL per part (we pick the size).
2. The client PUTs the parts, then direct_upload_complete completes the multipart upload,
   checks the object's size with HEAD and records the media in status `uploading`.
3. The client's SHA-256 is a claim until checked: the job verify_direct_upload streams the
   object once (in the worker, not the web process), corrects the recorded SHA-256 when the
   claim was wrong, resolves to the media the owner already has when the bytes are a
   duplicate, and only then queues processing. Until then the media's sha256 is the claim.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from gallery import events, jobs
from gallery.exceptions import DirectUploadUnavailable, InvalidInput, NotFound, StorageUnavailable
from gallery.models import Album, Media, Upload, User
from gallery.services.changes import media_changed
from gallery.services.library import album_items_add
from gallery.services.media import IngestResult, media_delete, media_queue_processing
from gallery.storage import blob_sha256, is_s3, multipart_complete, presign_url
from gallery.uploads.lifecycle import (
    STORAGE_ERRORS,
    part_size_for,
    s3_client,
    upload_close,
    upload_record,
    upload_reserve,
    upload_size_check,
)

log = logging.getLogger(__name__)

# SigV4 presigned URLs live at most a week.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600


@dataclass
class DirectUploadPlan:
    upload: Upload
    part_size: int
    parts: list[dict[str, Any]]  # [{"number": 1, "url": "...", "size": 16777216}, ...]


def direct_upload_create(*, owner: User, filename: str, size: int, content_type: str, sha256: str,
                         album: Album | None = None) -> DirectUploadPlan:
    """Reserve `size` bytes and hand out presigned part URLs (S3 storage only)."""
    if not is_s3():
        raise DirectUploadUnavailable("this server stores media on local disk, so there is no object store "
                                      "to upload to directly; use the tus endpoint /api/v1/uploads/")
    if size < 1:
        raise InvalidInput("size must be at least 1 byte")
    upload_size_check(size)
    part_size = part_size_for(size, settings.DIRECT_UPLOAD_PART_SIZE)
    upload = upload_reserve(owner=owner, kind=Upload.Kind.DIRECT, length=size, filename=filename,
                            filetype=content_type, album=album, sha256=sha256.lower(), part_size=part_size)
    client, bucket = s3_client()
    try:
        started = client.create_multipart_upload(Bucket=bucket, Key=upload.target_key,
                                                 ContentType=content_type or "application/octet-stream")
        Upload.objects.filter(pk=upload.pk).update(s3_upload_id=started["UploadId"])
        upload.s3_upload_id = started["UploadId"]
        seconds = min(MAX_PRESIGN_SECONDS, int((upload.expires_at - timezone.now()).total_seconds()))
        count = math.ceil(size / part_size)
        parts = [
            {"number": n, "size": min(part_size, size - (n - 1) * part_size),
             "url": presign_url("upload_part", expires_in=seconds,
                                params={"Key": upload.target_key, "UploadId": upload.s3_upload_id, "PartNumber": n})}
            for n in range(1, count + 1)
        ]
    except STORAGE_ERRORS as exc:
        log.exception("could not start direct upload %s", upload.pk)
        upload_close(upload_id=upload.pk, state=Upload.State.FAILED, error=str(exc))
        raise StorageUnavailable(f"the object store failed: {exc}") from exc
    return DirectUploadPlan(upload=upload, part_size=part_size, parts=parts)


def _parts_list(parts: list[dict[str, Any]], expected: int) -> list[dict[str, Any]]:
    numbers = [p["number"] for p in parts]
    if numbers != list(range(1, expected + 1)):
        raise InvalidInput(f"parts must be numbered 1..{expected} in order, each once; got {numbers}")
    return [{"PartNumber": p["number"], "ETag": p["etag"]} for p in parts]


def direct_upload_complete(*, upload: Upload, parts: list[dict[str, Any]]) -> IngestResult:
    """Complete the multipart upload, check its size and record the media (sha256 unverified yet)."""
    if upload.state == Upload.State.COMPLETED and upload.media is not None:
        return IngestResult(media=upload.media, created=False)  # a repeated complete
    if upload.state != Upload.State.ACTIVE:
        raise NotFound("no such upload")
    listed = _parts_list(parts, math.ceil(upload.length / upload.part_size))
    try:
        size = multipart_complete(key=upload.target_key, upload_id=upload.s3_upload_id, parts=listed)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall", "InvalidArgument", "MalformedXML"):
            raise InvalidInput(f"the object store refused the parts ({code}): {exc}") from exc
        raise StorageUnavailable(f"the object store failed: {exc}") from exc
    except STORAGE_ERRORS as exc:
        raise StorageUnavailable(f"the object store failed: {exc}") from exc
    if size != upload.length:
        upload_close(upload_id=upload.pk, state=Upload.State.FAILED, extra_files=(upload.target_key,),
                     error=f"assembled {size} bytes, announced {upload.length}")
        raise InvalidInput(f"the parts add up to {size} bytes, not the {upload.length} announced; "
                           "the upload was discarded", size=size, expected=upload.length)
    with transaction.atomic():
        # The claimed SHA-256 until the worker has read the bytes (direct_upload_verify).
        result = upload_record(upload_id=upload.pk, sha256=upload.sha256, dedup=False, status=Media.Status.UPLOADING)
        if result.created:
            jobs.enqueue("verify_direct_upload", {"media_id": str(result.media.pk)})
    return result


def direct_upload_verify(*, media_id: uuid.UUID | str) -> None:
    """Hash a directly uploaded original, correct a wrong claim, dedup, then queue processing.

    Safe to run twice: a media no longer `uploading` was verified already.
    """
    media = Media.objects.filter(pk=media_id, status=Media.Status.UPLOADING).first()
    if media is None:
        return
    actual = blob_sha256(media.original_key)
    with transaction.atomic():
        User.objects.select_for_update(no_key=True).get(pk=media.owner_id)  # serialises dedup per user
        media = Media.objects.select_for_update().filter(pk=media_id, status=Media.Status.UPLOADING).first()
        if media is None:
            return
        if actual != media.sha256:
            log.warning("direct upload of media %s claimed sha256 %s but is %s; recorded the truth",
                        media.pk, media.sha256, actual)
            media.details = {**media.details, "claimed_sha256": media.sha256}
            media.sha256 = actual
        existing = Media.objects.same_bytes(owner_id=media.owner_id, sha256=actual).exclude(pk=media.pk).first()
        if existing is not None:
            # The owner had these bytes already: the upload resolves to that media.
            Upload.objects.filter(media=media).update(media=existing)
            for album in media.albums.all():
                album_items_add(album=album, media_ids=[existing.pk])
            media_delete(media=media)
            return
        media.status = Media.Status.PENDING
        media.save(update_fields=["sha256", "details", "status", "updated_at"])
        media_queue_processing(media=media)
        media_changed(owner_id=media.owner_id, media_ids=[media.pk])
        events.send_after_commit(media.owner_id, "media.updated", media_id=str(media.pk), status=media.status)
