"""Share links: create and revoke (what a share shows is Media.objects.shared_by)."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.utils import timezone

from gallery.exceptions import InvalidInput
from gallery.models import Album, Media, Share, User


@transaction.atomic
def share_create(*, owner: User, media: Media | None = None, album: Album | None = None, password: str = "",
                 expires_at: datetime | None = None, allow_download: bool = False,
                 show_metadata: bool = False) -> Share:
    """A new link to one media or one album of `owner` (the caller found them through the
    owner's own querysets). The password is stored hashed; empty means none."""
    if (media is None) == (album is None):
        raise InvalidInput("share exactly one of a media or an album")
    for thing in (media, album):
        if thing is not None and thing.owner_id != owner.pk:
            raise InvalidInput("only your own media and albums can be shared")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("expires_at: must be in the future")
    return Share.objects.create(owner=owner, media=media, album=album,
                                password_hash=make_password(password) if password else "",
                                expires_at=expires_at, allow_download=allow_download, show_metadata=show_metadata)


@transaction.atomic
def share_revoke(*, share: Share) -> Share:
    """Revoke a link: from now on it answers 404 everywhere (idempotent)."""
    if share.revoked_at is None:
        share.revoked_at = timezone.now()
        Share.objects.filter(pk=share.pk, revoked_at__isnull=True).update(revoked_at=share.revoked_at)
    return share
