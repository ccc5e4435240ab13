"""Share links: a token that shows one media or one album to anyone who has the link.

What a share shows is decided by the one visibility rule (`Media.objects.shared_by`, next
to `visible_to` in gallery.models); this module holds the table and its cheap reads only.
It does not import gallery.models (gallery.models imports it at the bottom).
"""

from __future__ import annotations

import secrets
from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


def new_share_token() -> str:
    # 192 random bits, URL-safe (32 characters): the whole secret of a link without a password.
    return secrets.token_urlsafe(24)


class ShareQuerySet(models.QuerySet):
    def owned_by(self, user) -> ShareQuerySet:
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(owner=user)

    def live(self, *, now: datetime | None = None) -> ShareQuerySet:
        """Shares a link still opens: not revoked, not expired, of an active account."""
        now = now or timezone.now()
        return self.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now), revoked_at__isnull=True,
                           owner__is_active=True)


class Share(models.Model):
    """A link to one media or one album of its owner (exactly one of the two)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="shares")
    media = models.ForeignKey("gallery.Media", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    album = models.ForeignKey("gallery.Album", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    token = models.CharField(max_length=64, unique=True, default=new_share_token, editable=False)
    # django.contrib.auth.hashers output; empty: no password.
    password_hash = models.CharField(max_length=256, blank=True, default="", editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    allow_download = models.BooleanField(default=False)
    show_metadata = models.BooleanField(default=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ShareQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(media__isnull=False, album__isnull=True) | Q(media__isnull=True, album__isnull=False)),
                name="share_media_xor_album"),
        ]
        indexes = [models.Index(fields=["owner", "-id"], name="share_owner_list")]

    def __str__(self) -> str:
        what = f"media {self.media_id}" if self.media_id else f"album {self.album_id}"
        return f"share of {what} ({self.token[:6]}…)"

    @property
    def has_password(self) -> bool:
        return bool(self.password_hash)

    def is_live(self, *, now: datetime | None = None) -> bool:
        """The same test as ShareQuerySet.live, on a loaded row (the owner's is_active aside)."""
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
