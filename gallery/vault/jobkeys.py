"""One-time keys for processing vault items: how a job gets a file key that is gone once it is done.

The worker has no credential, so a job cannot unlock anything. When a vault item is queued
for processing, its file key is wrapped under a fresh random *job secret*; the wrapped key
goes in the job's payload (the database), the job secret in the cache (Redis) with a
timeout of VAULT_JOB_KEY_HOURS. Neither half alone opens anything. The job opens the key,
and when it is done (succeeded, or failed for good) the secret is deleted: the payload left
in the job row is then a wrapped key whose wrapping key no longer exists.
"""

from __future__ import annotations

import base64
import secrets

from django.conf import settings
from django.core.cache import cache

from gallery.vault import crypto


def _cache_key(job_key_id: str) -> str:
    return f"vault:job:{job_key_id}"


def _aad(media_id: str) -> bytes:
    return f"chipmunk vault job\0{media_id}".encode()


def job_key_issue(*, media_id, file_key: bytes) -> dict[str, str]:
    """Payload fields for a job on this media: the key's id and the file key wrapped for the job."""
    job_key_id = secrets.token_hex(16)
    secret = crypto.new_key()
    cache.set(_cache_key(job_key_id), secret, timeout=settings.VAULT_JOB_KEY_HOURS * 3600)
    wrapped = crypto.wrap(file_key, secret, _aad(str(media_id)))
    return {"vault_job": job_key_id, "vault_key": base64.b64encode(wrapped).decode("ascii")}


def job_key_open(*, media_id, vault_job: str, vault_key: str) -> bytes | None:
    """The file key for this job, None when its secret is gone (expired, or the job done)."""
    secret = cache.get(_cache_key(vault_job))
    if not isinstance(secret, bytes):
        return None
    try:
        return crypto.unwrap(base64.b64decode(vault_key), secret, _aad(str(media_id)))
    except (crypto.VaultCryptoError, ValueError):
        return None


def job_key_drop(*, vault_job: str | None) -> None:
    if vault_job:
        cache.delete(_cache_key(vault_job))
