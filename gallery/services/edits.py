"""Edits a media's owner makes by hand: name, description, date of capture, position.

A date or position set here is flagged (taken_at_manual, location_manual) so that
processing the file again (gallery.processing.pipeline) never overwrites it.
"""

from __future__ import annotations

import math
from datetime import datetime
from datetime import timezone as dt_timezone

from django.db import transaction
from django.utils import timezone

from gallery.exceptions import InvalidInput
from gallery.models import Media
from gallery.services.changes import media_changed
from gallery.services.media import clean_filename
from gallery.services.timeline import album_items_retime, timeline_move

UNSET = object()
MAX_DESCRIPTION = 10_000


def media_edit(*, media: Media, name: str | object = UNSET, description: str | object = UNSET,
               taken_at: datetime | object = UNSET,
               location: tuple[float, float] | None | object = UNSET) -> Media:
    """Change what the owner may change; fields left UNSET stay. `taken_at` must carry its
    UTC offset (kept as the local offset of capture); `location` is (latitude, longitude),
    or None to forget the position, and its place name is looked up again."""
    changes: dict[str, object] = {}
    if name is not UNSET:
        if not str(name).strip():
            raise InvalidInput("name: cannot be empty")
        changes["original_filename"] = clean_filename(str(name))
    if description is not UNSET:
        if len(str(description)) > MAX_DESCRIPTION:
            raise InvalidInput(f"description: at most {MAX_DESCRIPTION} characters")
        changes["description"] = str(description).replace("\x00", "")
    if taken_at is not UNSET:
        offset = taken_at.utcoffset() if isinstance(taken_at, datetime) else None
        if offset is None:
            raise InvalidInput("taken_at: an ISO 8601 date and time with its UTC offset (2024-05-17T14:03:00+02:00)")
        changes.update(taken_at=taken_at.astimezone(dt_timezone.utc),
                       taken_at_offset_minutes=int(offset.total_seconds() // 60),
                       taken_at_estimated=False, taken_at_manual=True)
    if location is not UNSET:
        changes.update(_location_fields(location), location_manual=True)
    return _apply(media=media, changes=changes)


def _location_fields(location: tuple[float, float] | None) -> dict[str, object]:
    if location is None:
        return dict(latitude=None, longitude=None, altitude=None, place_city="", place_region="", place_country="")
    lat, lon = location
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise InvalidInput("latitude/longitude: -90..90 and -180..180")
    # Before any lock: the first lookup in a process loads the place data (~1.5 s of CPU).
    from gallery.processing.places import place_at

    place = place_at(lat, lon)
    return dict(latitude=lat, longitude=lon, altitude=None, place_city=place.city if place else "",
                place_region=place.region if place else "", place_country=place.country if place else "")


@transaction.atomic
def _apply(*, media: Media, changes: dict[str, object]) -> Media:
    locked = Media.objects.select_for_update().get(pk=media.pk)
    old_day = locked.taken_day
    for field, value in changes.items():
        setattr(locked, field, value)
    if "taken_at" in changes:
        locked.set_capture_day(media.owner.time_zone)
        changes.update(taken_day=locked.taken_day, taken_month=locked.taken_month)
        timeline_move(media=locked, old_day=old_day)
        album_items_retime(media_id=locked.pk, taken_at=locked.taken_at)
    if changes:
        changes["updated_at"] = timezone.now()
        Media.objects.filter(pk=locked.pk).update(**changes)
        media_changed(owner_id=locked.owner_id, media_ids=[locked.pk])
    return locked
