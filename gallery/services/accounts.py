"""Accounts: users, their quota, and API keys."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from django.db import transaction
from django.utils import timezone

from gallery.exceptions import InvalidInput, QuotaExceeded
from gallery.models import ApiKey, User
from gallery.services.library import favourites_for


@transaction.atomic
def user_create(
    *, username: str, password: str | None, quota_bytes: int | None = None, email: str = "",
    is_staff: bool = False, is_superuser: bool = False, time_zone: str = "UTC",
) -> User:
    """Create a local account (with its Favourites album)."""
    if User.objects.filter(username=username).exists():
        raise InvalidInput(f"a user named {username!r} already exists")
    extra = {"time_zone": time_zone, "is_staff": is_staff, "is_superuser": is_superuser}
    if quota_bytes is not None:
        if quota_bytes < 0:
            raise InvalidInput("quota must not be negative")
        extra["quota_bytes"] = quota_bytes
    user = User.objects.create_user(username=username, email=email, password=password, **extra)
    favourites_for(user=user)
    return user


def quota_check(*, user: User, requested: int) -> None:
    """Raise QuotaExceeded when `requested` more bytes would not fit in the user's quota."""
    if user.used_bytes + user.reserved_bytes + requested > user.quota_bytes:
        raise QuotaExceeded(
            f"{requested} bytes do not fit: quota {user.quota_bytes}, used {user.used_bytes}, "
            f"reserved {user.reserved_bytes}",
            quota=user.quota_bytes, used=user.used_bytes, reserved=user.reserved_bytes, requested=requested,
        )


# --- API keys ---------------------------------------------------------------------------
KEY_PREFIX = "chip_"


def _hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def apikey_create(*, user: User, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """Create an API key; returns the row and the raw key, which is shown once and never stored."""
    unknown = sorted(set(scopes) - set(ApiKey.SCOPES))
    if unknown or not scopes:
        raise InvalidInput(f"scopes must be among {', '.join(ApiKey.SCOPES)}; got {', '.join(scopes) or 'none'}")
    prefix = secrets.token_hex(4)
    raw = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(user=user, name=name, prefix=prefix, hashed_secret=_hash_key(raw),
                                scopes=sorted(set(scopes)))
    return key, raw


def apikey_authenticate(*, raw: str) -> ApiKey | None:
    """The active key matching `raw`, with its last use recorded; None when it matches none."""
    if not raw.startswith(KEY_PREFIX):
        return None
    prefix = raw[len(KEY_PREFIX):].split("_", 1)[0]
    if not re.fullmatch(r"[0-9a-f]{8}", prefix):
        return None  # not one of ours; never let arbitrary bytes reach the query
    key = ApiKey.objects.select_related("user").filter(prefix=prefix, revoked_at__isnull=True).first()
    if key is None or not hmac.compare_digest(key.hashed_secret, _hash_key(raw)) or not key.user.is_active:
        return None
    now = timezone.now()
    # Writing on every request would serialise the API on one row; a minute is precise enough.
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


def apikey_revoke(*, key: ApiKey) -> None:
    """Revoke a key; it stops authenticating at once."""
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
