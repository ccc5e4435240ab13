"""The library's organisation: albums (Favourites among them), favourites and tags.

Every id a caller names is resolved through Media.objects.visible_to(owner): an id that is
not one of the owner's visible media (another user's, trashed, in the vault, unknown) is a
404 naming it, never silently skipped.
"""

from __future__ import annotations

import uuid
from typing import Iterable, Sequence

from django.db import IntegrityError, transaction
from django.utils import timezone

from gallery import signals
from gallery.exceptions import InvalidInput, NotFound, ProtectedAlbum
from gallery.models import Album, AlbumItem, Media, Tag, User, tag_key
from gallery.services.changes import media_changed

FAVOURITES_TITLE = "Favourites"
MAX_IDS = 1000  # ids in one request body: one bounded write
MAX_TAG_NAMES = 100
UNSET = object()


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


def visible_ids(*, owner: User, ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    """The ids, all of them owner's visible media, in their order without repeats; NotFound
    (404, listing the others) if any is not."""
    wanted = list(dict.fromkeys(ids))
    if len(wanted) > MAX_IDS:
        raise InvalidInput(f"at most {MAX_IDS} media ids in one request", max_ids=MAX_IDS)
    found = set(Media.objects.visible_to(owner).filter(pk__in=wanted).values_list("pk", flat=True))
    missing = [str(pk) for pk in wanted if pk not in found]
    if missing:
        raise NotFound("no such media", missing=missing)
    return wanted


def clean_title(title: str) -> str:
    title = " ".join((title or "").split())
    if not title:
        raise InvalidInput("title: an album needs a title")
    if len(title) > 200:
        raise InvalidInput("title: at most 200 characters")
    return title


@transaction.atomic
def album_create(*, owner: User, title: str) -> Album:
    """A new (empty) album of `owner`."""
    return Album.objects.create(owner=owner, title=clean_title(title))


@transaction.atomic
def album_update(*, album: Album, title: str | object = UNSET, cover: uuid.UUID | None | object = UNSET) -> Album:
    """Rename an album or choose its cover (a visible media in it; None: the newest item).
    The Favourites album keeps its name."""
    album = Album.objects.select_for_update().get(pk=album.pk)
    if title is not UNSET:
        title = clean_title(title)
        if album.is_favourites and title != album.title:
            raise ProtectedAlbum("the Favourites album cannot be renamed")
        album.title = title
    if cover is not UNSET:
        if cover is not None:
            visible_ids(owner=album.owner, ids=[cover])
            if not album.media.filter(pk=cover).exists():
                raise InvalidInput("cover: the cover must be a media in this album")
        album.cover_id = cover
    album.save(update_fields=["title", "cover"])
    return album


@transaction.atomic
def album_delete(*, album: Album) -> None:
    """Delete an album (its media stay); the Favourites album cannot be deleted."""
    if album.is_favourites:
        raise ProtectedAlbum("the Favourites album cannot be deleted")
    members = list(album.media.values_list("pk", flat=True))
    album.delete()
    _touch(album.owner_id, members)  # their `albums` lost this one


@transaction.atomic
def album_change_media(*, album: Album, add: Sequence[uuid.UUID] = (), remove: Sequence[uuid.UUID] = ()) -> None:
    """Add and remove media (the owner's visible ones, at most MAX_IDS in all); idempotent.
    An id in both lists ends up removed. A removed chosen cover is unchosen."""
    if len(add) + len(remove) > MAX_IDS:
        raise InvalidInput(f"at most {MAX_IDS} media ids in one request", max_ids=MAX_IDS)
    add = visible_ids(owner=album.owner, ids=add)
    remove = visible_ids(owner=album.owner, ids=remove)
    if add:
        album_items_add(album=album, media_ids=add)
    if remove:
        album.media.remove(*remove)
        Album.objects.filter(pk=album.pk, cover_id__in=remove).update(cover=None)
    _touch(album.owner_id, [*add, *remove])


@transaction.atomic
def album_items_add(*, album: Album, media_ids: Sequence[uuid.UUID]) -> None:
    """Put these media in the album (already there is fine), each with its taken_at, the
    album's order key. Their rows are locked first (in id order) so that a concurrent change of
    taken_at, which updates the media's album rows under the same lock, cannot miss this one."""
    found = list(Media.objects.select_for_update(no_key=True).filter(pk__in=media_ids).order_by("pk")
                 .values_list("pk", "taken_at"))
    AlbumItem.objects.bulk_create([AlbumItem(album_id=album.pk, media_id=pk, taken_at=taken_at)
                                   for pk, taken_at in found], ignore_conflicts=True)
    # A bulk write sends no m2m_changed: search hears of it this way.
    signals.media_changed.send(sender=Media, media_ids=[pk for pk, _ in found])


@transaction.atomic
def media_favourite(*, media: Media, favourite: bool) -> None:
    """Put a media in (or take it out of) its owner's Favourites album; idempotent."""
    album = favourites_for(user=media.owner)
    if favourite:
        album_items_add(album=album, media_ids=[media.pk])
    else:
        album.media.remove(media)
        Album.objects.filter(pk=album.pk, cover_id=media.pk).update(cover=None)
    _touch(media.owner_id, [media.pk])


def clean_tag_names(names: Iterable[str]) -> dict[str, str]:
    """{key: name} for tag names: trimmed, inner spaces collapsed; InvalidInput for an empty
    or over-long one. Names equal but for case are one entry (the first spelling)."""
    cleaned: dict[str, str] = {}
    for raw in names:
        name = " ".join(str(raw).split())
        if not name:
            raise InvalidInput("tags: a tag name cannot be empty")
        if len(name) > 100:
            raise InvalidInput("tags: a tag name has at most 100 characters")
        cleaned.setdefault(tag_key(name), name)
    if len(cleaned) > MAX_TAG_NAMES:
        raise InvalidInput(f"tags: at most {MAX_TAG_NAMES} names in one request")
    return cleaned


def tags_for(*, owner: User, names: dict[str, str]) -> list[Tag]:
    """The owner's tags of these keys, made when missing (a racing request's row is reused)."""
    tags = {t.key: t for t in Tag.objects.filter(owner=owner, key__in=names)}
    for key, name in names.items():
        if key in tags:
            continue
        try:
            with transaction.atomic():
                tags[key] = Tag.objects.create(owner=owner, name=name, key=key)
        except IntegrityError:
            tags[key] = Tag.objects.get(owner=owner, key=key)
    return list(tags.values())


@transaction.atomic
def tags_change(*, owner: User, media: Sequence[uuid.UUID], add: Iterable[str] = (),
                remove: Iterable[str] = ()) -> None:
    """Tag and untag media of `owner` in bulk; names compare trimmed and case-insensitively.
    A name in both lists ends up removed. Removing a tag nobody has is no error; a tag left
    on no media at all is deleted."""
    ids = visible_ids(owner=owner, ids=media)
    add_names, remove_names = clean_tag_names(add), clean_tag_names(remove)
    through = Media.tags.through
    if ids and add_names:
        tags = tags_for(owner=owner, names=add_names)
        through.objects.bulk_create([through(media_id=pk, tag_id=tag.pk) for pk in ids for tag in tags],
                                    ignore_conflicts=True)
    if ids and remove_names:
        tag_ids = list(Tag.objects.filter(owner=owner, key__in=remove_names).values_list("pk", flat=True))
        through.objects.filter(media_id__in=ids, tag_id__in=tag_ids).delete()
        Tag.objects.filter(pk__in=tag_ids, media__isnull=True).delete()
    _touch(owner.pk, ids)


def _touch(owner_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> None:
    # What a media shows changed (its albums, tags, favourite): its updated_at says so, and
    # phones hear of it (the sync change log; last write of the transaction).
    if ids:
        Media.objects.filter(pk__in=ids).update(updated_at=timezone.now())
        media_changed(owner_id=owner_id, media_ids=ids)
