"""Writes that carry what a file's metadata says into the library: keywords become tags,
and an import's folders and Takeout flags become albums and favourites."""

from __future__ import annotations

from typing import Any, Iterable

from django.db import transaction

from gallery.models import Album, Media, User, tag_key
from gallery.services.changes import media_changed
from gallery.services.library import album_items_add, favourites_for, tags_for
from gallery.services.media import media_queue_processing


@transaction.atomic
def media_tags_from_metadata(*, media: Media, names: Iterable[str]) -> list[str]:
    """Tag a media with the keywords its metadata carries (XMP dc:subject, sidecars).

    Each keyword is applied once: the names applied are kept in details["metadata_tags"],
    so processing again does not bring back a tag its owner has removed. Returns the names
    added now.
    """
    row = Media.objects.select_for_update().filter(pk=media.pk).values("details").first()
    if row is None:
        return []
    details = row["details"] or {}
    applied = set(details.get("metadata_tags", []))
    new = [name for name in dict.fromkeys(n.strip()[:100] for n in names) if name and name not in applied]
    if not new:
        return []
    # The owner's tags compare case-insensitively (Tag.key): "xmp" joins an existing "XMP".
    for tag in tags_for(owner=media.owner, names={tag_key(name): name for name in new}):
        tag.media.add(media)
    details["metadata_tags"] = sorted(applied | set(new))
    Media.objects.filter(pk=media.pk).update(details=details)
    media_changed(owner_id=media.owner_id, media_ids=[media.pk])
    return new


def album_for_import(*, owner: User, title: str) -> Album:
    """The owner's album of that title (the oldest if several), made when there is none, so that
    running an import again fills the same album."""
    title = title.strip()[:200] or "Imported"
    album = Album.objects.filter(owner=owner, title=title, is_favourites=False).order_by("created_at").first()
    return album or Album.objects.create(owner=owner, title=title)


@transaction.atomic
def media_add_to_albums(*, media: Media, albums: Iterable[Album] = (), favourite: bool = False) -> None:
    """Put a media in albums of its owner, and in their Favourites; already there is fine."""
    targets = [a for a in albums if a.owner_id == media.owner_id]
    if favourite:
        targets.append(favourites_for(user=media.owner))
    for album in targets:
        album_items_add(album=album, media_ids=[media.pk])
    if targets:
        media_changed(owner_id=media.owner_id, media_ids=[media.pk])


def media_attach_sidecar(*, media: Media, sidecar: dict[str, Any]) -> bool:
    """Give a media its sidecar data when it has none (a photo uploaded from the phone before,
    found again in a Takeout). Processing runs again only if the sidecar can fill a gap: a
    date for an estimated taken_at, a position, a description or keywords. Returns whether
    it was attached."""
    with transaction.atomic():
        row = Media.objects.select_for_update().filter(pk=media.pk).first()
        if row is None or row.details.get("sidecar") or not sidecar:
            return False
        details = {**row.details, "sidecar": sidecar}
        Media.objects.filter(pk=row.pk).update(details=details)
        dated = bool(sidecar.get("xmp_dates") or sidecar.get("taken_timestamp"))
        useful = ((row.taken_at_estimated and dated) or (row.latitude is None and "latitude" in sidecar)
                  or "description" in sidecar or "tags" in sidecar)
        # A pending media is processed soon anyway and will read the sidecar then.
        if useful and row.status in (Media.Status.READY, Media.Status.FAILED):
            media_queue_processing(media=row)
    return True
