"""Domain exceptions raised by services; media_api.errors maps them to HTTP responses.

Each carries a stable machine-readable `code`, an HTTP `status` and optional extra fields
that end up in the JSON body next to "error" and "detail".
"""

from __future__ import annotations

from typing import Any


class ChipmunkError(Exception):
    code = "error"
    status = 400

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(ChipmunkError):
    code = "not_found"
    status = 404


class QuotaExceeded(ChipmunkError):
    code = "quota_exceeded"
    status = 413


class InvalidInput(ChipmunkError):
    code = "invalid"
    status = 400


class Conflict(ChipmunkError):
    code = "conflict"
    status = 409


class ProtectedAlbum(ChipmunkError):
    code = "protected_album"
    status = 409


class StorageUnavailable(ChipmunkError):
    code = "storage_unavailable"
    status = 503


# --- Uploads (gallery.uploads.tus, gallery.uploads.direct); statuses follow the tus protocol ---
class OffsetMismatch(Conflict):
    code = "offset_mismatch"


class UploadBusy(Conflict):
    """Another request is writing this upload right now (it holds the upload's lease)."""

    code = "upload_busy"


class UploadExpired(ChipmunkError):
    code = "upload_expired"
    status = 410


class ChecksumMismatch(ChipmunkError):
    code = "checksum_mismatch"
    status = 460


class TooLarge(ChipmunkError):
    code = "too_large"
    status = 413


class UnsupportedVersion(ChipmunkError):
    code = "unsupported_version"
    status = 412


class UnsupportedMediaType(ChipmunkError):
    code = "unsupported_media_type"
    status = 415


class DirectUploadUnavailable(Conflict):
    code = "direct_upload_unavailable"


class MetadataTooLarge(InvalidInput):
    code = "metadata_too_large"


class TooManyUploads(ChipmunkError):
    """The owner holds UPLOAD_MAX_ACTIVE unfinished uploads already."""

    code = "too_many_uploads"
    status = 429


# --- tus concatenation -------------------------------------------------------------------
class PartialNotFound(ChipmunkError):
    """A final upload names no usable partial upload of the caller's (whose, is never said)."""

    code = "partial_not_found"
    status = 400


class PartialIncomplete(ChipmunkError):
    """Concatenating partials that are still receiving bytes is not supported."""

    code = "partial_incomplete"
    status = 400


class FinalUploadReadOnly(ChipmunkError):
    code = "final_upload_read_only"
    status = 403


# --- Identity (gallery.services.identity) ------------------------------------------------
class LoginRefused(ChipmunkError):
    """The provider vouched for someone this gallery will not let in (deactivated, ambiguous)."""

    code = "login_refused"
    status = 403


# --- Sync (gallery.services.changes) -------------------------------------------------------
class FullSyncRequired(ChipmunkError):
    """A sync cursor from before the oldest kept tombstone: the client must start over."""

    code = "full_sync_required"
    status = 410


# --- Share links (gallery.sharing, gallery.services.sharing) ------------------------------
class PasswordRequired(ChipmunkError):
    """A password-protected share that this client has not unlocked."""

    code = "password_required"
    status = 403


class WrongPassword(ChipmunkError):
    code = "wrong_password"
    status = 403


class Throttled(ChipmunkError):
    """Too many wrong guesses; `retry_after` seconds until the next may be tried."""

    code = "throttled"
    status = 429


# --- The vault (gallery.services.vault, gallery.services.vault_media) ----------------------
class VaultLocked(ChipmunkError):
    """The vault exists but this credential has not unlocked it (or it locked itself)."""

    code = "vault_locked"
    status = 423


class VaultNotSetUp(ChipmunkError):
    code = "vault_not_set_up"
    status = 404


class VaultExists(Conflict):
    code = "vault_exists"


class VaultWrongSecret(ChipmunkError):
    code = "wrong_passphrase"
    status = 403


class VaultThrottled(Throttled):
    """Too many wrong passphrases or recovery keys for this user in the window (`retry_after`)."""
