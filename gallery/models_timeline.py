"""The timeline's counters: how many library media each owner has per local day of capture.

Kept exact like KindUsage, in the transactions that change what they count
(gallery.services.media.usage_add for rows entering or leaving the library,
gallery.services.timeline.timeline_move for a changed day), so the buckets of a library
of a million media are a read of a few thousand rows, never a scan of the media table.
This module does not import gallery.models (it is imported at the bottom of it).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class TimelineDay(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "day"], name="timeline_day_unique")]

    def __str__(self) -> str:
        return f"{self.owner_id} {self.day}: {self.count}"
