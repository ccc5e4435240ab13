"""When a photo was taken: the precedence exiftool-based galleries use, in one place.

The first source that has a date wins (docs/metadata.md explains each step):
  1. EXIF DateTimeOriginal (+ OffsetTimeOriginal)
  2. XMP exif:DateTimeOriginal, then photoshop:DateCreated, then xmp:CreateDate
  3. EXIF DateTimeDigitized (+ OffsetTimeDigitized)
  4. QuickTime creation date (videos)
  5. IFD0 DateTime (+ OffsetTime), then xmp:ModifyDate
  6. sidecars: XMP sidecar dates in the order above, Google Takeout's photoTakenTime
  7. the file's own date (set when the media row is created, flagged estimated)
A date a person typed (Media.taken_at_manual) wins over all of them: the pipeline does
not call this module for such a media.

Offsets: a source's own offset is used. A date without one borrows the offset of another
source that names the same wall-clock time (an editor copying EXIF DateTimeOriginal into
XMP adds the zone the camera did not record); otherwise the pipeline takes the time zone
at the GPS position, else the owner's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from gallery.processing.exif import ExifData
from gallery.processing.xmp import XmpData, parse_xmp_date


@dataclass
class DateCandidate:
    source: str  # "exif:DateTimeOriginal", "quicktime:CreationDate", "sidecar:takeout", ...
    local: datetime | None  # naive wall-clock time of capture, when the source gives one
    offset_minutes: int | None  # its UTC offset, when known
    instant: datetime | None = None  # an aware moment whose local offset is not recorded


def candidates(*, exif: ExifData | None = None, xmp: XmpData | None = None,
               quicktime: datetime | None = None, sidecar: dict[str, Any] | None = None) -> list[DateCandidate]:
    """Every date the sources offer, in precedence order (the first one wins)."""
    found: list[DateCandidate] = []

    def xmp_dates(data: XmpData | None, names: tuple[str, ...], prefix: str = "") -> None:
        for name in names:
            date = data.dates.get(name) if data is not None else None
            if date is not None:
                found.append(DateCandidate(prefix + name, date.value, date.offset_minutes))

    if exif is not None and exif.original_at:
        found.append(DateCandidate("exif:DateTimeOriginal", exif.original_at, exif.original_offset_minutes))
    xmp_dates(xmp, ("exif:DateTimeOriginal", "photoshop:DateCreated", "xmp:CreateDate"))
    if exif is not None and exif.digitized_at:
        found.append(DateCandidate("exif:DateTimeDigitized", exif.digitized_at, exif.digitized_offset_minutes))
    xmp_dates(xmp, ("exif:DateTimeDigitized",))
    if quicktime is not None:
        found.append(DateCandidate("quicktime:CreationDate", None, _offset_of(quicktime), instant=quicktime))
    if exif is not None and exif.modified_at:
        found.append(DateCandidate("exif:DateTime", exif.modified_at, exif.modified_offset_minutes))
    xmp_dates(xmp, ("xmp:ModifyDate",))
    if sidecar:
        found.extend(sidecar_candidates(sidecar))
    return found


def sidecar_candidates(sidecar: dict[str, Any]) -> list[DateCandidate]:
    """The dates of Media.details["sidecar"] (written by import_folder), in their order."""
    found = []
    for name, text in sidecar.get("xmp_dates", []):
        date = parse_xmp_date(text)
        if date is not None:
            found.append(DateCandidate(f"sidecar:{name}", date.value, date.offset_minutes))
    timestamp = sidecar.get("taken_timestamp")
    if isinstance(timestamp, (int, float)) and 0 < timestamp < 32503680000:  # before year 3000
        # Google Photos keeps a UTC moment and forgets the zone it was taken in.
        moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
        found.append(DateCandidate("sidecar:takeout", None, None, instant=moment))
    return found


def best(found: list[DateCandidate]) -> DateCandidate | None:
    """The first candidate, given an offset borrowed from another that names the same time."""
    if not found:
        return None
    chosen = found[0]
    if chosen.local is not None and chosen.offset_minutes is None:
        for other in found[1:]:
            if other.offset_minutes is not None and other.local == chosen.local:
                return DateCandidate(chosen.source, chosen.local, other.offset_minutes)
    return chosen


def _offset_of(moment: datetime) -> int | None:
    # QuickTime's creation_time is UTC (no zone of capture); Apple's key keeps the local offset.
    offset = moment.utcoffset()
    if offset is None or offset == timedelta(0):
        return None
    return int(offset.total_seconds() // 60)
