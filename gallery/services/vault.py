"""The vault's keys: set-up, unlock, lock, passphrase change, status.

A keyring stores the vault key wrapped twice (by the passphrase's Argon2id key and by the
recovery key) and the KDF parameters; never a key in the clear. Unlocking keeps the vault
key with the credential that unlocked (gallery.vault.keys). Every check of a passphrase or
recovery key goes through gallery.throttle's "vault-unlock" scope, per user.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Sum

from gallery.exceptions import InvalidInput, VaultExists, VaultNotSetUp, VaultThrottled, VaultWrongSecret
from gallery.models import KindUsage, User, VaultKeyring
from gallery.throttle import throttle_check, throttle_fail
from gallery.vault import crypto, keys

THROTTLE_SCOPE = "vault-unlock"


def _aad(user_id, what: str) -> bytes:
    return f"chipmunk vault key\0{user_id}\0{what}".encode()


def _passphrase_check(passphrase: object) -> str:
    if not isinstance(passphrase, str) or len(passphrase) < settings.VAULT_PASSPHRASE_MIN_LENGTH:
        raise InvalidInput(f"the passphrase must have at least {settings.VAULT_PASSPHRASE_MIN_LENGTH} characters",
                           min_length=settings.VAULT_PASSPHRASE_MIN_LENGTH)
    if len(passphrase) > 1024:
        raise InvalidInput("the passphrase is longer than 1024 characters")
    return passphrase


def _kek(keyring: VaultKeyring, passphrase: str) -> bytes:
    return crypto.passphrase_kek(passphrase, bytes(keyring.salt), memory_kib=keyring.memory_kib,
                                 time_cost=keyring.time_cost, parallelism=keyring.parallelism)


def _new_passphrase_wrap(keyring: VaultKeyring, vault_key: bytes, passphrase: str) -> None:
    keyring.salt = crypto.new_salt()
    keyring.memory_kib = settings.VAULT_ARGON2_MEMORY_KIB
    keyring.time_cost = settings.VAULT_ARGON2_TIME_COST
    keyring.parallelism = settings.VAULT_ARGON2_PARALLELISM
    keyring.by_passphrase = crypto.wrap(vault_key, _kek(keyring, passphrase), _aad(keyring.user_id, "passphrase"))


def vault_setup(*, user: User, passphrase: str) -> str:
    """Create the user's vault: a random vault key wrapped by the passphrase and by a new
    recovery key, which is returned (shown once, stored nowhere). VaultExists if there is one."""
    passphrase = _passphrase_check(passphrase)
    if VaultKeyring.objects.filter(user=user).exists():
        raise VaultExists("this account has a vault already")
    vault_key = crypto.new_key()
    recovery, shown = crypto.recovery_key_new()
    keyring = VaultKeyring(user=user, recovery_salt=crypto.new_salt())
    _new_passphrase_wrap(keyring, vault_key, passphrase)  # Argon2id: outside any transaction
    keyring.by_recovery = crypto.wrap(vault_key, crypto.recovery_kek(recovery, bytes(keyring.recovery_salt)),
                                      _aad(user.pk, "recovery"))
    with transaction.atomic():
        User.objects.select_for_update(no_key=True).filter(pk=user.pk).first()
        if VaultKeyring.objects.filter(user=user).exists():
            raise VaultExists("this account has a vault already")
        keyring.save(force_insert=True)
    return shown


def _keyring(user: User) -> VaultKeyring:
    keyring = VaultKeyring.objects.filter(user=user).first()
    if keyring is None:
        raise VaultNotSetUp("this account has no vault yet; set one up first")
    return keyring


def _open(user: User, *, passphrase: object = None, recovery_key: object = None) -> tuple[VaultKeyring, bytes]:
    """The vault key from a passphrase or a recovery key, counted by the throttle when wrong."""
    keyring = _keyring(user)
    wait = throttle_check(THROTTLE_SCOPE, str(user.pk))
    if wait:
        raise VaultThrottled(f"too many wrong attempts; try again in {wait} seconds", retry_after=wait)
    try:
        if recovery_key not in (None, ""):
            raw = crypto.recovery_key_parse(str(recovery_key))
            if raw is None:
                raise crypto.VaultCryptoError("malformed recovery key")
            kek = crypto.recovery_kek(raw, bytes(keyring.recovery_salt))
            return keyring, crypto.unwrap(bytes(keyring.by_recovery), kek, _aad(user.pk, "recovery"))
        if not isinstance(passphrase, str) or not passphrase or len(passphrase) > 1024:
            raise crypto.VaultCryptoError("no passphrase")
        return keyring, crypto.unwrap(bytes(keyring.by_passphrase), _kek(keyring, passphrase),
                                      _aad(user.pk, "passphrase"))
    except crypto.VaultCryptoError:
        throttle_fail(THROTTLE_SCOPE, str(user.pk))
        raise VaultWrongSecret("that passphrase or recovery key does not open this vault") from None


@dataclass(frozen=True)
class UnlockResult:
    unlocked: keys.Unlocked
    credential: keys.Credential  # with the client secret (a session's new cookie value)


def vault_unlock(*, user: User, credential: keys.Credential, passphrase: object = None,
                 recovery_key: object = None) -> UnlockResult:
    """Open the vault for this credential until lock, logout or VAULT_IDLE_MINUTES idle.
    A session gets a new client secret (its cookie); a bearer token's comes from the token."""
    _, vault_key = _open(user, passphrase=passphrase, recovery_key=recovery_key)
    if credential.kind == "session":
        credential = keys.Credential(id=credential.id, secret=crypto.new_key(), kind="session")
    return UnlockResult(unlocked=keys.remember(user_id=user.pk, credential=credential, vault_key=vault_key),
                        credential=credential)


def vault_lock(*, user: User, credential: keys.Credential | None) -> None:
    """Close the vault for this credential (other unlocked credentials stay open)."""
    keys.forget(user_id=user.pk, credential=credential)


def vault_change_passphrase(*, user: User, new: str, old: object = None, recovery_key: object = None) -> None:
    """Rewrap the vault key under a new passphrase (new salt, current KDF parameters). No blob
    and no other key changes: the recovery key and unlocked credentials stay valid."""
    new = _passphrase_check(new)
    if old in (None, "") and recovery_key in (None, ""):
        raise InvalidInput("send the old passphrase (old) or the recovery key (recovery_key)")
    keyring, vault_key = _open(user, passphrase=old, recovery_key=recovery_key)
    _new_passphrase_wrap(keyring, vault_key, new)
    VaultKeyring.objects.filter(pk=keyring.pk).update(
        salt=keyring.salt, memory_kib=keyring.memory_kib, time_cost=keyring.time_cost,
        parallelism=keyring.parallelism, by_passphrase=keyring.by_passphrase)


def vault_status(*, user: User, unlocked: keys.Unlocked | None) -> dict:
    """exists, unlocked, unlocked_until (epoch seconds or None), count and bytes of vault items."""
    totals = KindUsage.objects.filter(owner=user, place=KindUsage.Place.VAULT).aggregate(
        count=Sum("count"), bytes=Sum("bytes"))
    return {"exists": VaultKeyring.objects.filter(user=user).exists(), "unlocked": unlocked is not None,
            "unlocked_until": unlocked.until if unlocked is not None else None,
            "count": totals["count"] or 0, "bytes": totals["bytes"] or 0}


def vault_file_key_wrap(*, unlocked: keys.Unlocked, media_id, file_key: bytes) -> bytes:
    return crypto.wrap(file_key, unlocked.key, _aad(unlocked.user_id, f"file\0{media_id}"))


def vault_file_key(*, unlocked: keys.Unlocked, media_id, wrapped: bytes) -> bytes:
    return crypto.unwrap(bytes(wrapped), unlocked.key, _aad(unlocked.user_id, f"file\0{media_id}"))


def vault_digest(*, unlocked: keys.Unlocked, sha256: str) -> str:
    """What a vault row keeps in place of the SHA-256: HMAC under a key derived from the vault
    key (dedup inside the vault works; the column says nothing without the key)."""
    digest_key = crypto.hkdf(unlocked.key, salt=None, info=b"chipmunk vault dedup")
    return crypto.keyed_digest(digest_key, bytes.fromhex(sha256))
