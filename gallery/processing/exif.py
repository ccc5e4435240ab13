"""EXIF reading with exifread: capture time, place, camera and exposure of a photo.

Damaged metadata is common (editors, phone apps, broken cameras) and must never fail a
file: read_exif returns whatever could be read and describes the problem in `error`.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import struct
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import IO, Any

import exifread
from exifread.core.exceptions import ExifNotFound

RAW_VALUE_LIMIT = 2000
# Keys exifread uses for embedded previews; binary and large, never worth storing.
_SKIPPED_KEYS = {"JPEGThumbnail", "TIFFThumbnail", "EXIF MakerNote", "MakerNote"}
_BINARY_FIELD_TYPE = 7  # UNDEFINED: opaque bytes unless short (ExifVersion "0230")

_exifread_logger = logging.getLogger("exifread")


@dataclass
class ExifData:
    taken_at: datetime | None = None  # naive local wall-clock time as the camera recorded it
    offset_minutes: int | None = None  # UTC offset of taken_at, when the camera recorded one
    # The three EXIF dates apart, for the precedence in gallery.processing.dates (taken_at
    # above is the first of them that is set): DateTimeOriginal, DateTimeDigitized, IFD0 DateTime.
    original_at: datetime | None = None
    original_offset_minutes: int | None = None  # OffsetTimeOriginal, else OffsetTime
    digitized_at: datetime | None = None
    digitized_offset_minutes: int | None = None  # OffsetTimeDigitized, else OffsetTime
    modified_at: datetime | None = None
    modified_offset_minutes: int | None = None  # OffsetTime
    subsec: str | None = None  # fractional-second digits of taken_at, e.g. "054" = .054 s
    latitude: float | None = None
    longitude: float | None = None
    altitude: float | None = None  # metres, negative below sea level
    gps_utc: datetime | None = None  # aware UTC time from the GPS fix, if any
    make: str = ""
    model: str = ""
    lens: str = ""
    exposure: str = ""  # "1/250", "2", "0.5" as photographers write it
    aperture: float | None = None  # f-number
    iso: int | None = None
    focal_length: float | None = None  # millimetres, as shot (not 35 mm equivalent)
    orientation: int | None = None  # EXIF orientation 1-8
    raw: dict[str, str] = field(default_factory=dict)  # JSON-safe tag name -> printable value
    error: str | None = None


def read_exif(source: str | os.PathLike | IO[bytes]) -> ExifData:
    """Read EXIF from an image file; never raises for damaged metadata (see `error`)."""
    problems: list[str] = []
    tags: dict[str, Any] = {}
    collector = _WarningCollector()
    _exifread_logger.addHandler(collector)
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as fh:
                tags = _process(fh)
        else:
            start = source.tell()
            try:
                tags = _process(source)
            finally:
                source.seek(start)  # leave the stream where we found it for the next reader
    except OSError as exc:
        problems.append(f"cannot read file: {exc}")
    except Exception as exc:  # noqa: BLE001 - a third-party parser on untrusted bytes raises anything
        problems.append(f"damaged EXIF: {exc.__class__.__name__}: {exc}")
    finally:
        _exifread_logger.removeHandler(collector)
    problems.extend(collector.messages)

    data = ExifData()
    try:
        _fill(data, tags)
    except Exception as exc:  # noqa: BLE001 - same reason: values of unexpected types
        problems.append(f"damaged EXIF value: {exc.__class__.__name__}: {exc}")
    if problems:
        data.error = "; ".join(dict.fromkeys(problems))[:RAW_VALUE_LIMIT]
    return data


def _process(fh: IO[bytes]) -> dict[str, Any]:
    fh.seek(0)
    if fh.read(2) == b"\xff\xd8":
        # exifread gives up on JPEGs whose first APP1 is XMP rather than EXIF (common
        # after Photoshop/Lightroom); find the EXIF segment ourselves and hand exifread
        # its TIFF payload, which it reads like a TIFF file.
        # "Exif" and a NUL, then a pad byte that writers do not all set to NUL.
        found, payload = jpeg_app1_payload(fh, b"Exif\x00")
        if found:
            if payload is None:
                return {}  # a JPEG without EXIF: nothing to report, not an error
            tags = _exifread(io.BytesIO(payload[1:]))
            if not tags:
                raise ValueError("EXIF block is present but unreadable")
            return tags
    return _exifread(fh)


def _exifread(fh: IO[bytes]) -> dict[str, Any]:
    # No MakerNote decoding (slow, vendor-specific), no thumbnail bytes, full-length values.
    return exifread.process_file(fh, details=False, extract_thumbnail=False, truncate_tags=False)


def jpeg_app1_payload(fh: IO[bytes], prefix: bytes) -> tuple[bool, bytes | None]:
    """Walk JPEG segments up to the image data: (walk succeeded, payload after `prefix` of the
    first APP1 segment that starts with it, or None). EXIF's prefix is "Exif" and a NUL, XMP's
    the namespace URI and a NUL."""
    fh.seek(2)
    for _ in range(256):
        mark = fh.read(2)
        while mark[:1] == b"\xff" and mark[1:] == b"\xff":
            mark = b"\xff" + fh.read(1)  # fill bytes between segments
        if len(mark) < 2 or mark[0] != 0xFF:
            return False, None
        marker = mark[1]
        if marker in (0xDA, 0xD9):  # start of scan, end of image: no metadata after this
            return True, None
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue  # markers without a length
        head = fh.read(2)
        if len(head) < 2:
            return False, None
        length = struct.unpack(">H", head)[0]
        if length < 2:
            return False, None
        if marker == 0xE1:
            payload = fh.read(length - 2)
            if payload.startswith(prefix):
                return True, payload[len(prefix):]
        else:
            fh.seek(length - 2, os.SEEK_CUR)
    return False, None


class _WarningCollector(logging.Handler):
    """Collects exifread's warnings about the file being read in this thread only."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # exifread logs "format not recognized / has no exif data" as a warning: for us
        # that is a file without EXIF, not a damaged one.
        if record.thread == self.thread and not isinstance(record.msg, ExifNotFound):
            self.messages.append(f"damaged EXIF: {record.getMessage()}")


def _fill(data: ExifData, tags: dict[str, Any]) -> None:
    data.raw = _raw(tags)

    data.original_at = _parse_datetime(_text(tags, "EXIF DateTimeOriginal"))
    data.digitized_at = _parse_datetime(_text(tags, "EXIF DateTimeDigitized"))
    data.modified_at = _parse_datetime(_text(tags, "Image DateTime"))
    data.modified_offset_minutes = _parse_offset(_text(tags, "EXIF OffsetTime"))
    data.original_offset_minutes = _first_offset(tags, "EXIF OffsetTimeOriginal", "EXIF OffsetTime")
    data.digitized_offset_minutes = _first_offset(tags, "EXIF OffsetTimeDigitized", "EXIF OffsetTime")
    data.taken_at = data.original_at or data.digitized_at or data.modified_at
    data.offset_minutes = _first_offset(tags, "EXIF OffsetTimeOriginal", "EXIF OffsetTime")
    subsec = re.sub(r"\D", "", _text(tags, "EXIF SubSecTimeOriginal") or _text(tags, "EXIF SubSecTime"))
    data.subsec = subsec or None

    data.latitude = _coordinate(tags, "GPS GPSLatitude", "GPS GPSLatitudeRef", "S", 90)
    data.longitude = _coordinate(tags, "GPS GPSLongitude", "GPS GPSLongitudeRef", "W", 180)
    if data.latitude is None or data.longitude is None or (data.latitude == 0 and data.longitude == 0):
        # 0/0 is what a camera writes when it had no fix; half a position is no position.
        data.latitude = data.longitude = None
    data.altitude = _altitude(tags)
    data.gps_utc = _gps_utc(tags)

    data.make = _text(tags, "Image Make")
    data.model = _text(tags, "Image Model")
    data.lens = _text(tags, "EXIF LensModel") or _lens_from_specification(tags)
    data.exposure = _exposure(_number(tags, "EXIF ExposureTime"))
    data.aperture = _aperture(tags)
    iso = _number(tags, "EXIF ISOSpeedRatings") or _number(tags, "EXIF PhotographicSensitivity")
    data.iso = int(iso) if iso and 0 < iso < 10_000_000 else None
    focal = _number(tags, "EXIF FocalLength")
    data.focal_length = round(focal, 2) if focal and 0 < focal < 100_000 else None
    orientation = _number(tags, "Image Orientation")
    data.orientation = int(orientation) if orientation in (1, 2, 3, 4, 5, 6, 7, 8) else None


def _clean(value: str) -> str:
    # NULs break PostgreSQL text/JSON; lone surrogates break UTF-8 encoding.
    value = value.replace("\x00", "").strip()
    return value.encode("utf-8", "replace").decode("utf-8")


def _text(tags: dict[str, Any], key: str) -> str:
    tag = tags.get(key)
    if tag is None:
        return ""
    values = getattr(tag, "values", None)
    if isinstance(values, bytes):
        values = values.decode("utf-8", "replace")
    return _clean(values if isinstance(values, str) else str(getattr(tag, "printable", "")))


def _to_float(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return result if math.isfinite(result) else None


def _values(tags: dict[str, Any], key: str) -> list[Any]:
    values = getattr(tags.get(key), "values", None)
    return list(values) if isinstance(values, (list, tuple)) else []


def _number(tags: dict[str, Any], key: str) -> float | None:
    values = _values(tags, key)
    return _to_float(values[0]) if values else None


_DATETIME_RE = re.compile(r"(\d{4})[:\-/.](\d{1,2})[:\-/.](\d{1,2})[ T]+(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?")


def _parse_datetime(text: str) -> datetime | None:
    # Cameras write "YYYY:MM:DD HH:MM:SS"; software writes dashes, a T, or nothing at all
    # ("0000:00:00 00:00:00", spaces) when the clock was never set.
    match = _DATETIME_RE.search(text)
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g or 0) for g in match.groups())
    if year < 1800:
        return None
    try:
        return datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError:
        return None


_OFFSET_RE = re.compile(r"^([+-])(\d{1,2}):?(\d{2})$")


def _parse_offset(text: str) -> int | None:
    match = _OFFSET_RE.match(text)
    if not match:
        return None
    minutes = int(match.group(2)) * 60 + int(match.group(3))
    if minutes > 14 * 60:
        return None
    return -minutes if match.group(1) == "-" else minutes


def _first_offset(tags: dict[str, Any], *keys: str) -> int | None:
    # A loop, not `or`: a legitimate +00:00 is 0 and falsy.
    for key in keys:
        offset = _parse_offset(_text(tags, key))
        if offset is not None:
            return offset
    return None


def _coordinate(
    tags: dict[str, Any], key: str, ref_key: str, negative_ref: str, limit: float
) -> float | None:
    parts = [_to_float(v) for v in _values(tags, key)]
    if not parts or any(p is None for p in parts):
        return None
    degrees, minutes, seconds = ([*parts, 0.0, 0.0])[:3]
    value = degrees + minutes / 60 + seconds / 3600  # type: ignore[operator]
    if _text(tags, ref_key).upper().startswith(negative_ref):
        value = -value
    return round(value, 7) if -limit <= value <= limit else None


def _altitude(tags: dict[str, Any]) -> float | None:
    altitude = _number(tags, "GPS GPSAltitude")
    if altitude is None or not -20_000 < altitude < 100_000:
        return None
    # Ref 1 means below sea level; some writers store it as text "1" instead of a byte.
    if _number(tags, "GPS GPSAltitudeRef") == 1 or _text(tags, "GPS GPSAltitudeRef") == "1":
        altitude = -altitude
    return round(altitude, 2)


def _gps_utc(tags: dict[str, Any]) -> datetime | None:
    date = re.match(r"(\d{4})[:\-](\d{1,2})[:\-](\d{1,2})", _text(tags, "GPS GPSDate"))
    clock = [_to_float(v) for v in _values(tags, "GPS GPSTimeStamp")]
    if not date or len(clock) != 3 or any(v is None for v in clock):
        return None
    hours, minutes, seconds = clock  # type: ignore[misc]
    try:
        day = datetime(*(int(g) for g in date.groups()), tzinfo=timezone.utc)
        moment = day + timedelta(hours=hours, minutes=minutes, seconds=seconds)  # type: ignore[arg-type]
    except (ValueError, OverflowError):
        return None
    return moment.replace(microsecond=0) if day.year >= 1980 else None


def _exposure(seconds: float | None) -> str:
    if seconds is None or seconds <= 0:
        return ""
    if seconds < 0.25:
        return f"1/{round(1 / seconds)}"
    return f"{seconds:.1f}".rstrip("0").rstrip(".")


def _aperture(tags: dict[str, Any]) -> float | None:
    f_number = _number(tags, "EXIF FNumber")
    if f_number is None:
        # ApertureValue is in APEX units: f = 2 ** (Av / 2).
        apex = _number(tags, "EXIF ApertureValue")
        f_number = 2 ** (apex / 2) if apex is not None and 0 <= apex < 30 else None
    return round(f_number, 1) if f_number and 0 < f_number < 1000 else None


def _lens_from_specification(tags: dict[str, Any]) -> str:
    spec = [_to_float(v) for v in _values(tags, "EXIF LensSpecification")]
    if len(spec) != 4 or any(v is None or v <= 0 for v in spec):
        return ""
    short, long, f_short, f_long = spec  # type: ignore[misc]
    focal = f"{short:g}mm" if short == long else f"{short:g}-{long:g}mm"
    aperture = f"f/{f_short:g}" if f_short == f_long else f"f/{f_short:g}-{f_long:g}"
    return f"{focal} {aperture}"


def _raw(tags: dict[str, Any]) -> dict[str, str]:
    raw: dict[str, str] = {}
    for key, tag in tags.items():
        if key in _SKIPPED_KEYS or "MakerNote" in key or not hasattr(tag, "printable"):
            continue
        values = getattr(tag, "values", None)
        binary = getattr(tag, "field_type", None) == _BINARY_FIELD_TYPE
        if binary and isinstance(values, (list, bytes)) and len(values) > 64:
            continue
        if key.split(" ")[-1].startswith("XP") and isinstance(values, list):
            # Windows Explorer's XPTitle/XPComment/... are UTF-16 text stored as bytes.
            utf16 = bytes(v & 0xFF for v in values if isinstance(v, int))
            text = _clean(utf16.decode("utf-16-le", "replace"))
        else:
            text = _clean(str(tag.printable))
        if not text or text == "[]" or _mostly_binary(text):
            continue
        raw[_clean(str(key))] = text[:RAW_VALUE_LIMIT]
    return raw


def _mostly_binary(text: str) -> bool:
    sample = text[:200]
    unprintable = sum(1 for ch in sample if not ch.isprintable() and ch not in "\t\n\r")
    return unprintable > len(sample) // 4
