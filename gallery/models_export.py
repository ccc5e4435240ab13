"""A user's export: a zip of their library built by a job (gallery.services.exports).

Does not import gallery.models (gallery.models imports this module at its bottom)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Export(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        READY = "ready"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="exports")
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    # `<user-id>/library/exports/<id>.zip` once built; its size and how many media it holds.
    key = models.CharField(max_length=512, blank=True, default="")
    size = models.BigIntegerField(default=0)
    media_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["owner", "-created_at"], name="export_owner_recent")]

    def __str__(self) -> str:
        return f"export {self.pk} [{self.state}]"
