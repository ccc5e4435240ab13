"""Accounts: users, their plan and quota, and API keys."""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets

from django.conf import settings
from django.db import connections, router, transaction
from django.utils import timezone

from gallery.compiled import CompiledQuery
from gallery.exceptions import InvalidInput, QuotaExceeded
from gallery.models import ApiKey, User
from gallery.services.library import favourites_for
from gallery.storage import blobs_delete_prefix, media_storage


def plan_check(plan: str) -> str:
    """The plan's name if QUOTA_PLANS has it; InvalidInput otherwise."""
    if plan not in settings.QUOTA_PLANS:
        raise InvalidInput(f"no plan named {plan!r}; plans: {', '.join(settings.QUOTA_PLANS)}")
    return plan


@transaction.atomic
def user_create(
    *, username: str, password: str | None, quota_bytes: int | None = None, plan: str | None = None,
    email: str = "", first_name: str = "", last_name: str = "", is_staff: bool = False,
    is_superuser: bool = False, time_zone: str = "UTC",
) -> User:
    """Create an account (with its Favourites album): on DEFAULT_PLAN unless told otherwise, with a
    personal quota when `quota_bytes` is given. No password: it can log in through the provider only."""
    if User.objects.filter(username=username).exists():
        raise InvalidInput(f"a user named {username!r} already exists")
    extra = {"time_zone": time_zone, "is_staff": is_staff, "is_superuser": is_superuser,
             "plan": plan_check(plan or settings.DEFAULT_PLAN), "first_name": first_name, "last_name": last_name}
    if quota_bytes is not None:
        if quota_bytes < 0:
            raise InvalidInput("quota must not be negative")
        extra["personal_quota_bytes"] = quota_bytes
    user = User.objects.create_user(username=username, email=email, password=password, **extra)
    favourites_for(user=user)
    return user


def user_set_plan(*, user: User, plan: str) -> None:
    """Put the user on a plan. A quota below what they use blocks new uploads; nothing is deleted."""
    user.plan = plan_check(plan)
    User.objects.filter(pk=user.pk).update(plan=user.plan)


def user_set_personal_quota(*, user: User, quota_bytes: int | None) -> None:
    """Give the user a quota of their own (None: follow the plan again)."""
    if quota_bytes is not None and quota_bytes < 0:
        raise InvalidInput("quota must not be negative")
    user.personal_quota_bytes = quota_bytes
    User.objects.filter(pk=user.pk).update(personal_quota_bytes=quota_bytes)


def user_set_time_zone(*, user: User, time_zone: str) -> None:
    """The zone used for media whose capture offset is unknown (an IANA name, e.g. Europe/Paris)."""
    import zoneinfo

    if time_zone not in zoneinfo.available_timezones():
        raise InvalidInput(f"no time zone named {time_zone[:64]!r}")
    user.time_zone = time_zone
    User.objects.filter(pk=user.pk).update(time_zone=time_zone)


def user_deactivate(*, user: User) -> None:
    """Stop an account from logging in or using its keys and tokens; nothing is deleted."""
    user.is_active = False
    User.objects.filter(pk=user.pk).update(is_active=False)


def user_reset_quota(*, user: User) -> None:
    """Drop a personal quota: the user's plan decides again."""
    user_set_personal_quota(user=user, quota_bytes=None)


def user_delete(*, user: User) -> int:
    """Delete an account and everything it owns: the rows in one transaction, then (after the
    commit) every blob under `<user-id>/`. Returns how many blobs went. Should the storage fail
    half-way, what is left is reported by `manage.py verify` as orphans of a user that no
    longer exists, and removed by its --delete-orphans."""
    prefix = f"{user.pk}/"
    with transaction.atomic():
        User.objects.filter(pk=user.pk).delete()
    return blobs_delete_prefix(media_storage(), prefix)


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
    key = _active_key(prefix)
    if key is None or not hmac.compare_digest(key.hashed_secret, _hash_key(raw)) or not key.user.is_active:
        return None
    now = timezone.now()
    # Writing on every request would serialise the API on one row; a minute is precise enough.
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


def _key_query(prefix: str):
    """The active key with this prefix and its user, every column of both: what
    `ApiKey.objects.select_related("user").filter(...).first()` loads."""
    columns = [f.attname for f in ApiKey._meta.concrete_fields] + [f"user__{f.attname}" for f in _USER_FIELDS]
    return ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True).order_by("pk").values_list(*columns)[:1]


_USER_FIELDS = User._meta.concrete_fields


@functools.cache
def _compiled_key_query(using: str) -> CompiledQuery | None:
    try:
        return CompiledQuery(_key_query, (("prefixA",), ("prefixB",)), using=using, convert=True)
    except ValueError:
        return None  # the lookup cannot be one query with the prefix as its argument: the ORM's


def _active_key(prefix: str) -> ApiKey | None:
    """The key row for a prefix, with its user: the query compiled once by the ORM and its rows
    built into models (a queryset built and compiled per request cost ~0.5 ms of CPU)."""
    using = router.db_for_read(ApiKey)
    query = _compiled_key_query(using)
    if query is None:
        return ApiKey.objects.select_related("user").filter(prefix=prefix, revoked_at__isnull=True).first()
    with connections[using].cursor() as cursor:
        rows = query.converted(query.rows(cursor, prefix))
    if not rows:
        return None
    fields = ApiKey._meta.concrete_fields
    key = ApiKey.from_db(using, [f.attname for f in fields], rows[0][:len(fields)])
    user = User.from_db(using, [f.attname for f in _USER_FIELDS], rows[0][len(fields):])
    ApiKey.user.field.set_cached_value(key, user)
    return key


def apikey_revoke(*, key: ApiKey) -> None:
    """Revoke a key; it stops authenticating at once."""
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
