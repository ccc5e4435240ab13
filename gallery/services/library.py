"""The library's organisation: albums (Favourites among them)."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from gallery.exceptions import ProtectedAlbum
from gallery.models import Album, User

FAVOURITES_TITLE = "Favourites"


def favourites_for(*, user: User) -> Album:
    """The user's Favourites album, made on first use; racing callers get the same row."""
    album = Album.objects.filter(owner=user, is_favourites=True).first()
    if album is not None:
        return album
    try:
        with transaction.atomic():
            return Album.objects.create(owner=user, is_favourites=True, title=FAVOURITES_TITLE)
    except IntegrityError:  # another request made it first (the partial unique constraint)
        return Album.objects.get(owner=user, is_favourites=True)


@transaction.atomic
def album_delete(*, album: Album) -> None:
    """Delete an album (its media stay); the Favourites album cannot be deleted."""
    if album.is_favourites:
        raise ProtectedAlbum("the Favourites album cannot be deleted")
    album.delete()


