"""The vault's tables: a user's keyring (wrapped vault key, KDF parameters) and the sealed
part of each vault item (its wrapped file key and encrypted metadata).

Nothing here is a key in the clear: see gallery.vault.crypto and docs/vault.md. This module
does not import gallery.models (it is imported at that module's bottom).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class VaultKeyring(models.Model):
    """One per user with a vault: the vault key wrapped by the passphrase's Argon2id key and
    by the recovery key, and what it takes to derive those again."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE,
                                related_name="vault_keyring")
    salt = models.BinaryField()
    memory_kib = models.PositiveIntegerField()
    time_cost = models.PositiveIntegerField()
    parallelism = models.PositiveIntegerField()
    by_passphrase = models.BinaryField()
    recovery_salt = models.BinaryField()
    by_recovery = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
    changed_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"vault keyring of {self.user_id}"


class VaultItem(models.Model):
    """The sealed half of a vault media: its file key (wrapped by the vault key, bound to the
    media id) and the one encrypted blob of its metadata (name, dates, place, camera, EXIF...)."""

    media = models.OneToOneField("gallery.Media", primary_key=True, on_delete=models.CASCADE,
                                 related_name="vault_item")
    wrapped_key = models.BinaryField()
    sealed = models.BinaryField()

    def __str__(self) -> str:
        return f"vault item {self.media_id}"
