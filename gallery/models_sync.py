"""The change log phones sync from (gallery.services.changes writes and reads it).

One `MediaChange` row per media that ever changed: the sequence number of its latest change
and whether that change took it out of the library (a tombstone, kept SYNC_TOMBSTONE_DAYS).
`SyncClock` is each owner's counter: taking a number locks the owner's clock row until the
writing transaction commits, so within an owner numbers are handed out in commit order and
a reader that saw number n has seen every change numbered below n (docs/architecture.md,
"Sync"). It does not import gallery.models (gallery.models imports it at the bottom).

The owner columns carry no database foreign key: a row lock taken through an FK check
(KEY SHARE on the user row) would wait on, and be waited on by, the services that lock the
user row; Django still deletes these rows with their user.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class SyncClock(models.Model):
    owner = models.OneToOneField(settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE,
                                 db_constraint=False, related_name="+")
    # The last number handed out, and the highest number of a tombstone pruned: a cursor
    # below it may have missed a deletion (410 full_sync_required).
    seq = models.BigIntegerField(default=0)
    pruned_seq = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"sync clock of {self.owner_id}: {self.seq} (pruned to {self.pruned_seq})"


class MediaChange(models.Model):
    id = models.BigAutoField(primary_key=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, db_constraint=False,
                              related_name="+")
    # No foreign key: the row outlives its media (it is the media's tombstone).
    media_id = models.UUIDField(unique=True)
    seq = models.BigIntegerField()
    deleted = models.BooleanField(default=False)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "seq"], name="mediachange_owner_seq")]
        indexes = [models.Index(fields=["changed_at"], condition=Q(deleted=True), name="mediachange_tombstones")]

    def __str__(self) -> str:
        return f"{self.media_id} #{self.seq}{' (deleted)' if self.deleted else ''}"
