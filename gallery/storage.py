"""Where blobs live: one Django storage alias ("media"), keys laid out per user and bucket.

Every key starts with `<user-id>/library/` or `<user-id>/vault/`, the two logical buckets
a user has. The storage itself is FileSystemStorage or django-storages' S3Storage,
chosen by STORAGE_BACKEND in settings.
"""

from __future__ import annotations

import os
import re
import uuid

from django.core.files.storage import Storage, storages

LIBRARY = "library"
VAULT = "vault"


def media_storage() -> Storage:
    return storages["media"]


def _safe_ext(filename: str) -> str:
    ext = os.path.splitext(filename)[1].lower()
    # Only short alphanumeric extensions survive into a key; anything else is dropped.
    return ext if re.fullmatch(r"\.[a-z0-9]{1,8}", ext) else ""


def original_key(*, user_id: uuid.UUID, media_id: uuid.UUID, filename: str, bucket: str = LIBRARY) -> str:
    return f"{user_id}/{bucket}/originals/{media_id}{_safe_ext(filename)}"


def variant_key(*, user_id: uuid.UUID, media_id: uuid.UUID, level: str, ext: str, bucket: str = LIBRARY) -> str:
    return f"{user_id}/{bucket}/variants/{media_id}/{level}.{ext}"


def is_s3(storage: Storage | None = None) -> bool:
    storage = storage or media_storage()
    return hasattr(storage, "bucket_name") and hasattr(storage, "connection")
