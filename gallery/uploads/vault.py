"""tus uploads into the vault: plaintext never reaches storage.

A vault upload gets a random upload key, wrapped by the vault key, kept in the Upload row
with its Upload-Metadata sealed under it (the row's filename and type stay empty). Each
PATCH encrypts its bytes with AES-256-CTR at their offset (gallery.vault.crypto.ctr_at)
before the usual sinks see them, so the part file (local disk), the S3 parts and the S3
tail are ciphertext from the first byte, and resuming or truncating at any offset works as
for any upload. Hashes and Upload-Checksum are taken over the plaintext. Once every byte
is there, the CTR blob is read once, decrypted and written in the vault's chunked
AES-256-GCM format under a new file key (vault_upload_complete), recorded as a vault item,
and the CTR blob deleted after commit. Concatenation is not offered for vault uploads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid

from django.db import transaction

from gallery.exceptions import NotFound, VaultLocked
from gallery.models import Upload
from gallery.processing.filetypes import SNIFF_BYTES
from gallery.services.media import IngestResult
from gallery.services.vault_media import vault_record
from gallery.uploads.lifecycle import metadata_file_date, upload_expiry
from gallery.vault import blobs, crypto
from gallery.vault.keys import Unlocked

METADATA_FILE_ID = bytes(16)


def is_vault(upload: Upload) -> bool:
    return (upload.metadata or {}).get("vault") == "true"


def _aad(user_id) -> bytes:
    return f"chipmunk vault upload\0{user_id}".encode()


def vault_upload_seal(*, unlocked: Unlocked, metadata: dict[str, str]) -> tuple[dict[str, str], bytes]:
    """What a vault upload's row keeps as metadata (the wrapped upload key and the client's
    metadata sealed under it), and the upload key."""
    upload_key = crypto.new_key()
    meta_key = crypto.hkdf(upload_key, salt=None, info=b"chipmunk vault upload metadata")
    sealed = crypto.encrypt_bytes(meta_key, METADATA_FILE_ID, json.dumps(metadata).encode("utf-8"))
    return {"vault": "true", "key": base64.b64encode(crypto.wrap(upload_key, unlocked.key,
                                                                 _aad(unlocked.user_id))).decode("ascii"),
            "sealed": base64.b64encode(sealed).decode("ascii")}, upload_key


def vault_upload_key(*, upload: Upload, unlocked: Unlocked | None) -> bytes:
    """The upload key of a vault upload, for a credential that holds the owner's vault open."""
    if unlocked is None or unlocked.user_id != upload.owner_id:
        raise VaultLocked("this upload goes into the vault, which is locked: unlock it to go on")
    return crypto.unwrap(base64.b64decode(upload.metadata["key"]), unlocked.key, _aad(upload.owner_id))


def ctr_key(upload_key: bytes) -> bytes:
    return crypto.hkdf(upload_key, salt=None, info=b"chipmunk vault upload ctr")


def _client_metadata(upload: Upload, upload_key: bytes) -> dict[str, str]:
    meta_key = crypto.hkdf(upload_key, salt=None, info=b"chipmunk vault upload metadata")
    return json.loads(crypto.decrypt_bytes(meta_key, METADATA_FILE_ID, base64.b64decode(upload.metadata["sealed"])))


def vault_upload_complete(*, row: Upload, upload_key: bytes, unlocked: Unlocked, sha256: str | None) -> IngestResult:
    """Convert the finished CTR blob into a vault original and record it; safe to run again."""
    if row.state == Upload.State.COMPLETED:
        return IngestResult(media=row.media, created=False)
    metadata = _client_metadata(row, upload_key)
    media_id, file_key = uuid.uuid4(), crypto.new_key()
    key = blobs.original_key(user_id=row.owner_id, media_id=media_id)
    digest, head = hashlib.sha256(), bytearray()

    def plaintext():
        transform = crypto.ctr_at(ctr_key(upload_key), 0)
        for piece in blobs.iter_blob(row.target_key):
            plain = transform.update(piece)
            digest.update(plain)
            if len(head) < SNIFF_BYTES:
                head.extend(plain[:SNIFF_BYTES - len(head)])
            yield plain

    blobs.encrypt_to(key, file_key=file_key, media_id=media_id, level="0", size=row.length, pieces=plaintext())
    if sha256 is not None and sha256 != digest.hexdigest():
        blobs.delete_blobs([key])
        raise crypto.VaultCryptoError("the stored upload does not hash to what was received")
    try:
        with transaction.atomic():
            locked = Upload.objects.select_for_update(of=("self",)).select_related("owner", "media").get(pk=row.pk)
            if locked.state == Upload.State.COMPLETED:
                transaction.on_commit(lambda: blobs.delete_blobs([key]))
                return IngestResult(media=locked.media, created=False)
            if locked.state != Upload.State.ACTIVE:
                raise NotFound("no such upload")
            result = vault_record(owner=locked.owner, unlocked=unlocked, media_id=media_id, file_key=file_key,
                                  key=key, size=row.length, sha256=digest.hexdigest(),
                                  filename=metadata.get("filename") or metadata.get("name") or "",
                                  content_type=metadata.get("filetype") or metadata.get("type"), head=bytes(head),
                                  reserved=locked.length, file_modified_at=metadata_file_date(metadata))
            locked.state = Upload.State.COMPLETED
            locked.media = result.media
            locked.expires_at = upload_expiry()
            locked.part_key = locked.tail_key = ""
            locked.save(update_fields=["state", "media", "expires_at", "part_key", "tail_key", "updated_at"])
            doomed = [row.target_key] if result.created else [row.target_key, key]
            transaction.on_commit(lambda: blobs.delete_blobs(doomed))
    except BaseException:
        blobs.delete_blobs([key])
        raise
    return result
