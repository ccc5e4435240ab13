"""Turn an uploaded original into a browsable item: metadata, variants, poster, status.

media_process() is what the process_media job runs. It is safe to run twice: variants that
exist are kept, only missing ones are made. A file that cannot be decoded ends `failed`
with the reason; a transient error (storage down) raises so the job is retried.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any, Iterator

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.db import transaction
from django.utils import timezone

from gallery import events
from gallery.models import Media, Variant, zone_named
from gallery.services.changes import media_changed
from gallery.services.metadata import media_tags_from_metadata
from gallery.services.timeline import album_items_retime, timeline_move
from gallery.services.vault_media import vault_meta_update
from gallery.storage import is_s3, media_storage, variant_key
from gallery.vault import blobs as vault_blobs

log = logging.getLogger(__name__)


class PermanentFailure(Exception):
    """The file itself is the problem: retrying cannot help."""


@dataclass
class Outcome:
    """What processing learned about a media, applied to its row in one update."""

    fields: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # (level, width, height, content_type, extension, bytes or local path)
    outputs: list[tuple[str, int, int, str, str, bytes | Path]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)  # keywords from XMP and sidecars, made Tag rows
    variant_sizes: dict[str, list[int]] = field(default_factory=dict)  # vault items: level -> [w, h]


@contextmanager
def local_copy(media: Media, file_key: bytes | None = None) -> Iterator[Path]:
    """A local path of the original: the file itself on disk storage, a temp copy from S3; for
    a vault item, its decrypted copy in VAULT_TEMP_DIR (memory), removed when the block ends."""
    storage = media_storage()
    if media.in_vault:
        with tempfile.TemporaryDirectory(dir=settings.VAULT_TEMP_DIR, prefix="vault-") as tmp:
            path = Path(tmp) / "original"
            with open(path, "wb") as dst:
                for piece in vault_blobs.decrypt_from(media.original_key, file_key=file_key, media_id=media.pk,
                                                      level="0"):
                    dst.write(piece)
            yield path
        return
    if not is_s3(storage):
        yield Path(storage.path(media.original_key))
        return
    suffix = Path(media.original_key).suffix
    with tempfile.TemporaryDirectory(dir=settings.FILE_UPLOAD_TEMP_DIR) as tmp:
        path = Path(tmp) / f"original{suffix}"
        with storage.open(media.original_key, "rb") as src, open(path, "wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
        yield path


def aware_taken_at(naive: datetime, offset_minutes: int | None, zone_name: str | None) -> tuple[datetime, int]:
    """A capture wall-clock time made aware: by its recorded offset, else by a zone name."""
    if offset_minutes is not None:
        tz = dt_timezone(timedelta(minutes=offset_minutes))
        return naive.replace(tzinfo=tz), offset_minutes
    aware = naive.replace(tzinfo=zone_named(zone_name))
    return aware, int(aware.utcoffset().total_seconds() // 60)


def _apply_location(outcome: Outcome, lat: float | None, lon: float | None, alt: float | None) -> str | None:
    """Record GPS and the place name; returns the time zone at that point (for dates)."""
    if lat is None or lon is None:
        return None
    # Imported only for a media with a position: the module pulls in scipy and the place
    # data (~0.8 s of CPU per worker process), which photos without GPS never need.
    from gallery.processing.places import place_at, timezone_at

    outcome.fields.update(latitude=lat, longitude=lon, altitude=alt)
    place = place_at(lat, lon)
    if place is not None:
        outcome.fields.update(place_city=place.city, place_region=place.region, place_country=place.country)
    return timezone_at(lat, lon)


def _apply_date(outcome: Outcome, media: Media, found: list, gps_zone: str | None) -> None:
    """taken_at from the first date of the precedence (gallery.processing.dates); a date typed
    by a person is never replaced (`taken_at_manual`)."""
    from gallery.processing.dates import best

    chosen = best(found)
    if chosen is None or media.taken_at_manual:
        return
    if chosen.local is not None:
        aware, offset_minutes = aware_taken_at(chosen.local, chosen.offset_minutes, gps_zone or media.owner.time_zone)
    else:  # a moment: its own offset, else the zone's at that moment
        if chosen.offset_minutes is not None:
            offset_minutes = chosen.offset_minutes
        else:
            local = chosen.instant.astimezone(zone_named(gps_zone or media.owner.time_zone))
            offset_minutes = int(local.utcoffset().total_seconds() // 60)
        aware = chosen.instant
    outcome.fields.update(taken_at=aware.astimezone(dt_timezone.utc), taken_at_offset_minutes=offset_minutes,
                          taken_at_estimated=False)
    outcome.details["taken_at_source"] = chosen.source


def _apply_descriptive(outcome: Outcome, media: Media, xmp, sidecar: dict[str, Any]) -> None:
    """Description, rating and keywords from embedded XMP, else from the sidecar. A description
    or rating the media already has is kept: it may be the owner's own words."""
    if xmp is not None and xmp.error:
        outcome.notes.append(f"XMP could not be read fully: {xmp.error}")
    description = (xmp.description if xmp is not None else "") or sidecar.get("description") or ""
    if description and not media.description:
        outcome.fields["description"] = description[:5000]
    rating = xmp.rating if xmp is not None and xmp.rating is not None else sidecar.get("rating")
    if isinstance(rating, (int, float)) and "rating" not in media.details:
        outcome.details["rating"] = rating
    keywords = [*(xmp.subjects if xmp is not None else []), *sidecar.get("tags", [])]
    outcome.tags = [k for k in dict.fromkeys(str(k).strip()[:100] for k in keywords) if k]


def _position(*sources: tuple[float | None, float | None, float | None]) -> tuple:
    """The first source with a whole position (latitude and longitude)."""
    for lat, lon, alt in sources:
        if lat is not None and lon is not None:
            return lat, lon, alt
    return None, None, None


def _sidecar_position(sidecar: dict[str, Any]) -> tuple:
    lat, lon, alt = (sidecar.get(k) for k in ("latitude", "longitude", "altitude"))
    if not all(isinstance(v, (int, float)) for v in (lat, lon)) or (lat == 0 and lon == 0):
        return None, None, None
    return lat, lon, alt if isinstance(alt, (int, float)) else None


def _image(media: Media, path: Path, outcome: Outcome) -> None:
    from gallery.processing.dates import candidates
    from gallery.processing.exif import read_exif
    from gallery.processing.images import ImageError, render_variants
    from gallery.processing.xmp import read_xmp

    exif = read_exif(path)
    xmp = read_xmp(path)
    sidecar = media.details.get("sidecar") or {}
    if exif.error:
        outcome.notes.append(f"EXIF could not be read fully: {exif.error}")
    try:
        info, variants = render_variants(path, max_pixels=settings.MAX_IMAGE_PIXELS)
    except ImageError as exc:
        raise PermanentFailure(str(exc)) from exc
    outcome.fields.update(width=info.width, height=info.height, exif=exif.raw,
                          camera_make=(exif.make or xmp.make)[:100], camera_model=(exif.model or xmp.model)[:100])
    outcome.details.update(format=info.format, lens=exif.lens, exposure=exif.exposure, aperture=exif.aperture,
                           iso=exif.iso, focal_length=exif.focal_length, animated=info.animated)
    position = _position((exif.latitude, exif.longitude, exif.altitude), (xmp.latitude, xmp.longitude, xmp.altitude),
                         _sidecar_position(sidecar))
    zone = _apply_location(outcome, *position)
    _apply_date(outcome, media, candidates(exif=exif, xmp=xmp, sidecar=sidecar), zone)
    _apply_descriptive(outcome, media, xmp, sidecar)
    outcome.outputs += [(v.level, v.width, v.height, v.content_type, "webp", v.data) for v in variants]


def _video(media: Media, path: Path, outcome: Outcome, workdir: Path) -> None:
    from gallery.processing.dates import candidates
    from gallery.processing.images import render_variants_from_image
    from gallery.processing.video import (
        VideoError,
        browser_playable,
        extract_poster,
        needs_faststart,
        probe_video,
        remux_faststart,
        transcode_webm,
    )
    from gallery.processing.xmp import read_xmp

    limit = settings.MAX_IMAGE_PIXELS  # a frame is an image: one rule for pixel bombs
    try:
        info = probe_video(path, max_pixels=limit)
        poster = extract_poster(path, info, max_pixels=limit)
    except VideoError as exc:
        raise PermanentFailure(str(exc)) from exc
    outcome.fields.update(width=info.width, height=info.height, duration=info.duration)
    outcome.details.update(video_codec=info.video_codec, audio_codec=info.audio_codec, fps=info.fps,
                           rotation=info.rotation, container=info.container, bitrate=info.bitrate)
    xmp = read_xmp(path)
    sidecar = media.details.get("sidecar") or {}
    position = _position((info.latitude, info.longitude, None), (xmp.latitude, xmp.longitude, xmp.altitude),
                         _sidecar_position(sidecar))
    zone = _apply_location(outcome, *position)
    # Containers record UTC (Apple's key keeps the offset); else the GPS zone's or the owner's.
    _apply_date(outcome, media, candidates(xmp=xmp, quicktime=info.created_at, sidecar=sidecar), zone)
    _apply_descriptive(outcome, media, xmp, sidecar)
    outcome.outputs += [(v.level, v.width, v.height, v.content_type, "webp", v.data)
                        for v in render_variants_from_image(poster)]
    existing = set(media.variants.values_list("level", flat=True))
    try:
        if "play" not in existing and needs_faststart(path):
            remuxed = workdir / "play.mp4"
            remux_faststart(path, remuxed, max_pixels=limit)
            outcome.outputs.append(("play", info.width, info.height, "video/mp4", "mp4", remuxed))
        if settings.VIDEO_TRANSCODE and "webm" not in existing and not browser_playable(info):
            webm = workdir / "play.webm"
            transcode_webm(path, webm, max_pixels=limit)
            made = probe_video(webm, max_pixels=limit)  # the transcode may have scaled it down
            outcome.outputs.append(("webm", made.width, made.height, "video/webm", "webm", webm))
    except VideoError as exc:  # a frame past the poster can still be damaged or too large
        raise PermanentFailure(str(exc)) from exc


def _audio(media: Media, path: Path, outcome: Outcome) -> None:
    from gallery.processing.audio import AudioError, read_audio
    from gallery.processing.images import ImageError, render_variants

    try:
        info = read_audio(path)
    except AudioError as exc:
        raise PermanentFailure(str(exc)) from exc
    outcome.fields.update(duration=info.duration)
    outcome.details.update(title=info.title, artist=info.artist, album=info.album, track=info.track,
                           bitrate=info.bitrate, sample_rate=info.sample_rate, codec=info.codec)
    if info.cover:
        import io

        # Cover art is held to the images' rule: render_variants reads the picture's header
        # and refuses more than MAX_IMAGE_PIXELS before decoding a pixel. A refused or broken
        # cover is a note on a `ready` media, not a failure: the sound itself is fine, and
        # failing would hide a playable track for the sake of its decoration.
        try:
            _, variants = render_variants(io.BytesIO(info.cover), max_pixels=settings.MAX_IMAGE_PIXELS)
        except ImageError as exc:
            outcome.notes.append(f"cover art could not be read: {exc}")
        else:
            outcome.outputs += [(v.level, v.width, v.height, v.content_type, "webp", v.data) for v in variants]


def _store_outputs(media: Media, outcome: Outcome, file_key: bytes | None = None) -> None:
    storage = media_storage()
    existing = set(media.variants.values_list("level", flat=True))
    made: list[Variant] = []
    for level, width, height, content_type, ext, data in outcome.outputs:
        if level in existing:
            continue
        if media.in_vault:  # encrypted as written; the sizes go in the sealed metadata
            key = vault_blobs.variant_key(user_id=media.owner_id, media_id=media.pk)
            size = len(data) if isinstance(data, bytes) else os.path.getsize(data)
            pieces = [data] if isinstance(data, bytes) else vault_blobs.file_pieces(data)
            vault_blobs.encrypt_to(key, file_key=file_key, media_id=media.pk, level=level, size=size, pieces=pieces)
            outcome.variant_sizes[level] = [width, height]
            made.append(Variant(media=media, level=level, width=0, height=0, size=size,
                                content_type=content_type, storage_key=key))
            continue
        # A fresh key per attempt: a changed output is a new file, never an overwritten one.
        key = variant_key(user_id=media.owner_id, media_id=media.pk, level=f"{level}-{uuid.uuid4().hex[:8]}", ext=ext)
        if isinstance(data, bytes):
            key = storage.save(key, ContentFile(data))
            size = len(data)
        else:
            with open(data, "rb") as fh:
                key = storage.save(key, File(fh))
            size = os.path.getsize(data)
        made.append(Variant(media=media, level=level, width=width, height=height, size=size,
                            content_type=content_type, storage_key=key))
    # One insert for all levels: ten get_or_creates cost 3-4 ms of CPU per photo. A level
    # another run stored first keeps its row (races stay harmless); our file for it is surplus.
    Variant.objects.bulk_create(made, ignore_conflicts=True)
    keys = [v.storage_key for v in made]
    stored = set(media.variants.filter(storage_key__in=keys).values_list("storage_key", flat=True))
    for variant in made:
        if variant.storage_key not in stored:
            storage.delete(variant.storage_key)


def without_nul(value: Any) -> Any:
    """The same data with NUL characters removed from every string (tags and EXIF carry them;
    PostgreSQL refuses them in text and JSON)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nul(v) for v in value]
    return value


def media_process(*, media_id: uuid.UUID | str, file_key: bytes | None = None) -> None:
    """Process one media (idempotent). Raises only for errors worth a retry. A vault item needs
    its file key (the job's one-time key): no plaintext is stored, and what processing learns
    goes into its sealed metadata, not the row."""
    media = Media.objects.select_related("owner").filter(pk=media_id).first()
    if media is None or media.status == Media.Status.UPLOADING or (media.in_vault and file_key is None):
        return
    Media.objects.filter(pk=media.pk).update(status=Media.Status.PROCESSING, updated_at=timezone.now())
    events.send(media.owner_id, "media.processing", media_id=str(media.pk))
    outcome = Outcome()
    try:
        workdir = settings.VAULT_TEMP_DIR if media.in_vault else settings.FILE_UPLOAD_TEMP_DIR
        with tempfile.TemporaryDirectory(dir=workdir) as tmp, local_copy(media, file_key) as path:
            if media.kind == Media.Kind.IMAGE:
                _image(media, path, outcome)
            elif media.kind == Media.Kind.VIDEO:
                _video(media, path, outcome, Path(tmp))
            elif media.kind == Media.Kind.AUDIO:
                _audio(media, path, outcome)
            _store_outputs(media, outcome, file_key)
    except PermanentFailure as exc:
        media_mark_failed(media_id=media.pk, error=str(exc))
        return
    if media.in_vault:
        _vault_ready(media, outcome, file_key)
        return
    with transaction.atomic():
        # Under the row's lock: an edit that landed while the file was read wins (manual
        # dates and places are never overwritten), and the timeline's day counters move once.
        current = Media.objects.select_for_update().filter(pk=media.pk).first()
        if current is None:  # deleted meanwhile
            return
        learned = _without_manual(current, outcome.fields)
        if current.description:  # the owner's words (an edit, or an earlier run) are kept
            learned.pop("description", None)
        if "taken_at" in learned:
            current.taken_at = learned["taken_at"]
            current.taken_at_offset_minutes = learned.get("taken_at_offset_minutes")
            old_day = current.taken_day
            current.set_capture_day(media.owner.time_zone)
            learned.update(taken_day=current.taken_day, taken_month=current.taken_month)
            timeline_move(media=current, old_day=old_day)
            album_items_retime(media_id=current.pk, taken_at=current.taken_at)
        fields = {**learned, "status": Media.Status.READY, "error": "\n".join(outcome.notes)[:5000],
                  "details": {**media.details, **outcome.details}, "updated_at": timezone.now()}
        fields = without_nul(fields)
        Media.objects.filter(pk=media.pk).update(**fields)
        if outcome.tags:
            media_tags_from_metadata(media=media, names=outcome.tags)
        media_changed(owner_id=media.owner_id, media_ids=[media.pk])  # phones and search follow
        events.send_after_commit(media.owner_id, "media.ready", media_id=str(media.pk))


DATE_FIELDS = ("taken_at", "taken_at_offset_minutes", "taken_at_estimated")
LOCATION_FIELDS = ("latitude", "longitude", "altitude", "place_city", "place_region", "place_country")


def _without_manual(media: Media, fields: dict[str, Any]) -> dict[str, Any]:
    """What processing learned, less what the owner set by hand (taken_at_manual, location_manual)."""
    dropped = (DATE_FIELDS if media.taken_at_manual else ()) + (LOCATION_FIELDS if media.location_manual else ())
    return {name: value for name, value in fields.items() if name not in dropped}


def _vault_ready(media: Media, outcome: Outcome, file_key: bytes) -> None:
    """A processed vault item: what was learned sealed in its metadata; the row only says ready."""
    # Keywords stay in the sealed metadata: as Tag rows they would name the item in the clear.
    changes = without_nul({**outcome.fields, "details": outcome.details, "keywords": outcome.tags})
    for name, value in changes.items():
        if isinstance(value, datetime):
            changes[name] = value.isoformat()
    with transaction.atomic():
        vault_meta_update(media_id=media.pk, file_key=file_key, changes=changes, variants=outcome.variant_sizes)
        Media.objects.filter(pk=media.pk).update(status=Media.Status.READY, updated_at=timezone.now(),
                                                 error="\n".join(outcome.notes)[:5000])
        events.send_after_commit(media.owner_id, "media.ready", media_id=str(media.pk))


def media_mark_failed(*, media_id: uuid.UUID | str, error: str) -> None:
    """Record that a media cannot be processed, and tell its owner's pages."""
    media = Media.objects.filter(pk=media_id).only("owner_id", "in_vault").first()
    if media is None:
        return
    error = without_nul(error)
    with transaction.atomic():
        Media.objects.filter(pk=media_id).update(status=Media.Status.FAILED, error=error[:5000],
                                                 updated_at=timezone.now())
        if not media.in_vault:  # sync never hears of vault items
            media_changed(owner_id=media.owner_id, media_ids=[media_id])
    events.send(media.owner_id, "media.failed", media_id=str(media_id), error=error[:500])
