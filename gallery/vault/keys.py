"""Where an unlocked vault key lives: with the credential that unlocked it, never at rest.

Unlocking gives the credential a 256-bit *client secret* the server does not keep:
- a web session: a random value in its own HttpOnly cookie (COOKIE), made at unlock;
- an API key or a provider token: derived (HKDF) from the bearer token itself, which the
  server stores only as a SHA-256 (API keys) or not at all (provider tokens).
The shared cache (Redis in production) keeps, per credential, only the vault key wrapped
(AES-256-GCM) under that secret, with a deadline: VAULT_IDLE_MINUTES after its last use,
renewed by use (the cache entry's own timeout follows it). Lock, logout and the deadline
delete or orphan the entry; without the client's secret nothing in the database, the
storage or the cache opens the vault. A request that carries the secret unwraps the vault
key for the time of that request only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from gallery.auth import bearer_token
from gallery.vault import crypto

COOKIE = "chipmunk_vault"
# The deadline is written back at most this often (a grid of thumbnails is one write, not a hundred).
RENEW_EVERY = 30


def now() -> float:
    """The clock of the idle deadline (tests move it)."""
    return time.time()


@dataclass(frozen=True)
class Credential:
    """What unlocked (or asks): a stable id for the credential and its client secret, None
    for a session that has no vault cookie yet."""

    id: str
    secret: bytes | None
    kind: str  # session | api_key | oidc


@dataclass(frozen=True)
class Unlocked:
    """Proof that this request's credential opened the vault of `user_id`: what
    Media.objects.visible_to(user, vault=...) takes, and the vault key for this request."""

    user_id: object
    key: bytes
    until: float


def credential_of(request) -> Credential | None:
    """The credential of an authenticated request (a Django or DRF request)."""
    raw = bearer_token(getattr(request, "_request", request))
    if raw is not None:
        return credential_from(bearer=raw)
    session = getattr(request, "session", None)
    if session is None or not session.session_key:
        return None
    return credential_from(session_key=session.session_key, cookie=request.COOKIES.get(COOKIE, ""))


def credential_from(*, bearer: str | None = None, session_key: str | None = None,
                    cookie: str | None = None) -> Credential | None:
    """The credential of a bearer token, or of a session's key with its vault cookie's value
    (what credential_of reads from a request; the delivery lane reads them from the scope)."""
    if bearer is not None:
        kind = "api_key" if bearer.startswith("chip_") else "oidc"
        digest = hashlib.sha256(bearer.encode()).hexdigest()[:32]
        secret = crypto.hkdf(bearer.encode(), salt=None, info=b"chipmunk vault client secret")
        return Credential(id=f"{kind}:{digest}", secret=secret, kind=kind)
    if not session_key:
        return None
    digest = hashlib.sha256(session_key.encode()).hexdigest()[:32]
    return Credential(id=f"session:{digest}", secret=_cookie_secret(cookie or ""), kind="session")


def _cookie_secret(value: str) -> bytes | None:
    try:
        secret = base64.urlsafe_b64decode(value.encode("ascii") + b"==")
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
    return secret if len(secret) == crypto.KEY_SIZE else None


def cookie_value(secret: bytes) -> str:
    return base64.urlsafe_b64encode(secret).decode("ascii").rstrip("=")


def _cache_key(user_id, credential: Credential) -> str:
    return f"vault:unlocked:{user_id}:{credential.id}"


def _aad(user_id, credential: Credential) -> bytes:
    return f"chipmunk vault unlock\0{user_id}\0{credential.id}".encode()


def _wrapping_key(secret: bytes) -> bytes:
    return crypto.hkdf(secret, salt=None, info=b"chipmunk vault unlock wrapping key")


def idle_seconds() -> int:
    return settings.VAULT_IDLE_MINUTES * 60


def remember(*, user_id, credential: Credential, vault_key: bytes) -> Unlocked:
    """Keep the vault key for this credential (wrapped under its client secret) until it is idle."""
    assert credential.secret is not None
    until = now() + idle_seconds()
    entry = {"wrapped": crypto.wrap(vault_key, _wrapping_key(credential.secret), _aad(user_id, credential)),
             "until": until}
    cache.set(_cache_key(user_id, credential), entry, timeout=idle_seconds())
    return Unlocked(user_id=user_id, key=vault_key, until=until)


def unlocked(*, user_id, credential: Credential | None, renew: bool = True) -> Unlocked | None:
    """The unlock of this credential if it holds one that is not idle; its deadline renewed
    unless `renew` is false (asking whether it is unlocked is not using it)."""
    if credential is None or credential.secret is None:
        return None
    cache_key = _cache_key(user_id, credential)
    entry = cache.get(cache_key)
    if not isinstance(entry, dict):
        return None
    moment = now()
    if entry.get("until", 0) <= moment:
        cache.delete(cache_key)
        return None
    try:
        vault_key = crypto.unwrap(entry["wrapped"], _wrapping_key(credential.secret), _aad(user_id, credential))
    except (crypto.VaultCryptoError, KeyError, TypeError):
        return None
    until = entry["until"]
    if renew and until - moment < idle_seconds() - RENEW_EVERY:
        until = moment + idle_seconds()
        cache.set(cache_key, {**entry, "until": until}, timeout=idle_seconds())
    return Unlocked(user_id=user_id, key=vault_key, until=until)


def forget(*, user_id, credential: Credential | None) -> None:
    """Lock: the credential's wrapped key leaves the cache."""
    if credential is not None:
        cache.delete(_cache_key(user_id, credential))


def unlocked_for(request, *, renew: bool = True) -> Unlocked | None:
    """The unlock the credential of this authenticated request holds, if any."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return unlocked(user_id=user.pk, credential=credential_of(request), renew=renew)
