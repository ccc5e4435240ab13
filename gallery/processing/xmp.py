"""XMP: the RDF/XML packet that editors, phones and cameras embed, or write beside a file.

Read here: the dates of gallery.processing.dates' precedence, GPS, dc:description,
dc:subject (keywords, which become tags), xmp:Rating and tiff:Make/Model. Packets come
from JPEG APP1, PNG iTXt, a byte scan of other containers (HEIC, MP4/MOV, TIFF, WebP) or a
sidecar file (IMG_1.jpg.xmp). Parsing goes through defusedxml with DTDs forbidden: a packet
is untrusted input, and entity expansion (billion laughs) or external entities must not
reach the parser. Like read_exif, nothing here raises for bad metadata: problems are in `error`.
Not read: JPEG "extended XMP" (a second packet split over several APP1 segments, used for
depth maps and the like; it never carries the fields above).
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from gallery.processing.exif import jpeg_app1_payload

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
NAMESPACES = {
    "exif": "http://ns.adobe.com/exif/1.0/",
    "exifEX": "http://cipa.jp/exif/1.0/",
    "photoshop": "http://ns.adobe.com/photoshop/1.0/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "tiff": "http://ns.adobe.com/tiff/1.0/",
}
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
JPEG_XMP_PREFIX = b"http://ns.adobe.com/xap/1.0/\x00"
PNG_XMP_KEYWORD = b"XML:com.adobe.xmp"
MAX_PACKET = 8 * 1024 * 1024  # Photoshop's edit history makes big packets; bigger is not XMP we want
SCAN_WINDOW = 32 * 1024 * 1024  # bytes scanned at each end of a container for a packet
MDAT_WINDOW = 4 * 1024 * 1024  # bytes scanned at the start of an ISO-BMFF media data box
_CHUNK = 1024 * 1024
_STARTS = (b"<x:xmpmeta", b"<x:xapmeta")
_ENDS = (b"</x:xmpmeta>", b"</x:xapmeta>")

# The date properties we know, in the names the precedence uses.
DATE_PROPERTIES = (
    "exif:DateTimeOriginal", "photoshop:DateCreated", "xmp:CreateDate", "exif:DateTimeDigitized", "xmp:ModifyDate",
)


@dataclass
class XmpDate:
    value: datetime  # naive wall-clock time; midnight when the packet gives a day only
    offset_minutes: int | None  # the time zone designator, when the packet has one
    has_time: bool = True


@dataclass
class XmpData:
    dates: dict[str, XmpDate] = field(default_factory=dict)  # "exif:DateTimeOriginal" -> date
    latitude: float | None = None
    longitude: float | None = None
    altitude: float | None = None
    description: str = ""
    subjects: list[str] = field(default_factory=list)
    rating: float | None = None  # -1 (rejected) to 5
    make: str = ""
    model: str = ""
    error: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.dates or self.latitude is not None or self.description or self.subjects
                    or self.rating is not None or self.make or self.model)


def read_xmp(source: str | os.PathLike | IO[bytes]) -> XmpData:
    """The XMP embedded in a file (an empty XmpData when it has none); never raises for bad XMP."""
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as fh:
                packet = find_packet(fh)
        else:
            start = source.tell()
            try:
                packet = find_packet(source)
            finally:
                source.seek(start)
    except OSError as exc:
        return XmpData(error=f"cannot read file: {exc}")
    except (ValueError, struct.error, zlib.error) as exc:
        return XmpData(error=f"damaged XMP container: {exc}")
    return parse_xmp(packet) if packet else XmpData()


def read_xmp_sidecar(path: str | os.PathLike) -> XmpData:
    """An .xmp sidecar file: the packet is the whole file (at most MAX_PACKET bytes)."""
    try:
        with open(path, "rb") as fh:
            packet = fh.read(MAX_PACKET + 1)
    except OSError as exc:
        return XmpData(error=f"cannot read file: {exc}")
    if len(packet) > MAX_PACKET:
        return XmpData(error="XMP sidecar too large")
    return parse_xmp(packet)


def find_packet(fh: IO[bytes]) -> bytes | None:
    """The raw XMP packet of a JPEG, PNG or other container, or None."""
    fh.seek(0)
    head = fh.read(8)
    if head[:2] == b"\xff\xd8":
        found, payload = jpeg_app1_payload(fh, JPEG_XMP_PREFIX)
        if found:
            return payload
    elif head == b"\x89PNG\r\n\x1a\n":
        return _png_packet(fh)
    elif head[4:8] == b"ftyp":
        return _bmff_packet(fh)
    return _scan_packet(fh)


def _png_packet(fh: IO[bytes]) -> bytes | None:
    fh.seek(8)
    while True:
        header = fh.read(8)
        if len(header) < 8:
            return None
        length, kind = struct.unpack(">I4s", header)
        if kind == b"IEND":
            return None
        if kind != b"iTXt" or length > MAX_PACKET:
            fh.seek(length + 4, os.SEEK_CUR)  # data and CRC
            continue
        data = fh.read(length)
        fh.seek(4, os.SEEK_CUR)
        keyword, _, rest = data.partition(b"\x00")
        if keyword != PNG_XMP_KEYWORD or len(rest) < 2:
            continue
        compressed, text = rest[0], rest[2:]
        text = text.split(b"\x00", 2)[-1]  # after the language tag and the translated keyword
        if compressed:
            inflater = zlib.decompressobj()
            text = inflater.decompress(text, MAX_PACKET)
        return text


def _bmff_packet(fh: IO[bytes]) -> bytes | None:
    """HEIC/AVIF/MP4/MOV: scan every top-level box but the media data, whole (MP4 keeps XMP in
    moov/udta/XMP_ or a uuid box), and the start of each mdat (HEIC stores its metadata items,
    EXIF then XMP, ahead of the image tiles). Reading the item locations (iloc) would be exact;
    this is bounded and finds what phones and cameras write."""
    size = fh.seek(0, os.SEEK_END)
    windows = []
    offset = 0
    while offset + 8 <= size and len(windows) < 1000:
        fh.seek(offset)
        length, kind = struct.unpack(">I4s", fh.read(8))
        header = 8
        if length == 1:
            length, header = struct.unpack(">Q", fh.read(8))[0], 16
        elif length == 0:
            length = size - offset
        if length < header:
            break
        end = min(offset + length, size)
        if kind == b"mdat":
            windows.append((offset + header, min(end, offset + header + MDAT_WINDOW)))
        elif kind != b"free":
            windows.append((offset + header, min(end, offset + header + SCAN_WINDOW)))
        offset += length
    return _scan_packet(fh, windows)


def _scan_packet(fh: IO[bytes], windows: list[tuple[int, int]] | None = None) -> bytes | None:
    """Look for <x:xmpmeta ...> in byte ranges, by default the first and last SCAN_WINDOW bytes
    of the file (TIFF, WebP, GIF and other containers). XMP is stored uncompressed."""
    if windows is None:
        size = fh.seek(0, os.SEEK_END)
        windows = [(0, min(size, SCAN_WINDOW))]
        if size > SCAN_WINDOW:
            windows.append((max(SCAN_WINDOW, size - SCAN_WINDOW), size))
    for start, end in windows:
        position = start
        carry = b""
        while position < end:
            fh.seek(position)
            block = carry + fh.read(min(_CHUNK, end - position))
            found = [block.find(marker) for marker in _STARTS]
            found = [i for i in found if i >= 0]
            if found:
                begin = position - len(carry) + min(found)
                return _packet_from(fh, begin)
            carry = block[-16:]
            position += _CHUNK
    return None


def _packet_from(fh: IO[bytes], begin: int) -> bytes | None:
    fh.seek(begin)
    data = b""
    while len(data) <= MAX_PACKET:
        chunk = fh.read(_CHUNK)
        if not chunk:
            return None
        data += chunk
        for marker in _ENDS:
            end = data.find(marker)
            if end >= 0:
                return data[: end + len(marker)]
    return None


def parse_xmp(packet: bytes | str) -> XmpData:
    """What we use of one XMP packet; damaged or hostile XML gives an XmpData with `error` set."""
    if isinstance(packet, str):
        packet = packet.encode("utf-8")
    start = min((i for i in (packet.find(b"<x:xmpmeta"), packet.find(b"<x:xapmeta"), packet.find(b"<rdf:RDF"))
                 if i >= 0), default=-1)
    if start < 0:
        return XmpData(error="no XMP packet found") if packet.strip() else XmpData()
    body = packet[start:]
    for marker in (*_ENDS, b"</rdf:RDF>"):
        end = body.rfind(marker)
        if end >= 0:
            body = body[: end + len(marker)]
            break
    try:
        root = fromstring(body.replace(b"\x00", b""), forbid_dtd=True)
    except DefusedXmlException as exc:
        return XmpData(error=f"refused XMP: {exc.__class__.__name__}")
    except Exception as exc:  # noqa: BLE001 - expat's ParseError and friends on bad bytes
        return XmpData(error=f"damaged XMP: {exc}"[:500])
    data = XmpData()
    try:
        _fill(data, _properties(root))
    except Exception as exc:  # noqa: BLE001 - values of unexpected shapes must not fail a file
        data.error = f"damaged XMP value: {exc.__class__.__name__}: {exc}"[:500]
    return data


def _properties(root: Element) -> dict[str, str | list[str]]:
    """Top-level properties of every rdf:Description as "prefix:Name" -> text or list of texts."""
    by_uri = {uri: prefix for prefix, uri in NAMESPACES.items()}
    found: dict[str, str | list[str]] = {}
    for description in root.iter(f"{{{RDF}}}Description"):
        for name, value in description.attrib.items():
            key = _short(name, by_uri)
            if key:
                found.setdefault(key, value)
        for child in description:
            key = _short(child.tag, by_uri)
            if key:
                found.setdefault(key, _value(child))
    return found


def _short(name: str, by_uri: dict[str, str]) -> str | None:
    if not name.startswith("{"):
        return None
    uri, _, local = name[1:].partition("}")
    prefix = by_uri.get(uri)
    return f"{prefix}:{local}" if prefix else None


def _value(element: Element) -> str | list[str]:
    container = next((c for c in element if c.tag in (f"{{{RDF}}}Alt", f"{{{RDF}}}Bag", f"{{{RDF}}}Seq")), None)
    if container is None:
        return (element.text or "").strip()
    items = [li for li in container if li.tag == f"{{{RDF}}}li"]
    if container.tag == f"{{{RDF}}}Alt":
        # A language alternative: the x-default entry, else the first.
        chosen = next((li for li in items if li.get(_XML_LANG) == "x-default"), items[0] if items else None)
        return (chosen.text or "").strip() if chosen is not None else ""
    return [(li.text or "").strip() for li in items if (li.text or "").strip()]


def _text(props: dict[str, str | list[str]], key: str) -> str:
    value = props.get(key, "")
    if isinstance(value, list):
        value = value[0] if value else ""
    return value.replace("\x00", "").strip()


def _fill(data: XmpData, props: dict[str, str | list[str]]) -> None:
    for key in DATE_PROPERTIES:
        date = parse_xmp_date(_text(props, key))
        if date is not None:
            data.dates[key] = date
    data.latitude = parse_gps_coordinate(_text(props, "exif:GPSLatitude"), "NS", 90)
    data.longitude = parse_gps_coordinate(_text(props, "exif:GPSLongitude"), "EW", 180)
    if data.latitude is None or data.longitude is None or (data.latitude == 0 and data.longitude == 0):
        data.latitude = data.longitude = None  # half a position, or 0/0 (no fix), is no position
    else:
        data.altitude = _altitude(_text(props, "exif:GPSAltitude"), _text(props, "exif:GPSAltitudeRef"))
    data.description = _text(props, "dc:description")[:5000]
    subjects = props.get("dc:subject", [])
    if isinstance(subjects, str):  # a lone string where a Bag belongs: comma-separated by convention
        subjects = subjects.split(",")
    data.subjects = list(dict.fromkeys(s.strip()[:100] for s in subjects if s.strip()))
    rating = _number(_text(props, "xmp:Rating"))
    data.rating = rating if rating is not None and -1 <= rating <= 5 else None
    data.make = _text(props, "tiff:Make")[:100]
    data.model = _text(props, "tiff:Model")[:100]


_XMP_DATE_RE = re.compile(
    r"^(\d{4})(?:[-:](\d{2})(?:[-:](\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,]\d+)?)?)?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_xmp_date(text: str) -> XmpDate | None:
    """An XMP date (ISO 8601 subset: "2008-03-15T09:52:01-04:00", "2003-08-31", ...) or None.

    A day without a time is midnight of that day, as exiftool shows it; a year or a month
    alone is too vague to date a photo and is ignored.
    """
    match = _XMP_DATE_RE.match(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, zone = match.groups()
    if day is None or int(year) < 1800:
        return None
    try:
        value = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                         min(int(second or 0), 59))
    except ValueError:
        return None
    offset = None
    if zone == "Z":
        offset = 0
    elif zone:
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 60 + int(digits[2:]))
        if abs(offset) > 14 * 60:
            offset = None
    return XmpDate(value=value, offset_minutes=offset if hour is not None else None, has_time=hour is not None)


_GPS_RE = re.compile(r"^(\d{1,3})(?:,(\d{1,2}(?:\.\d+)?))?(?:,(\d{1,2}(?:\.\d+)?))?\s*([NSEW])$", re.IGNORECASE)


def parse_gps_coordinate(text: str, refs: str, limit: float) -> float | None:
    """XMP's GPSCoordinate "DDD,MM,SSk" or "DDD,MM.mmk" (k one of N S E W), or a plain decimal."""
    text = text.strip()
    match = _GPS_RE.match(text)
    if match:
        degrees, minutes, seconds, ref = match.groups()
        if ref.upper() not in refs:
            return None
        value = int(degrees) + float(minutes or 0) / 60 + float(seconds or 0) / 3600
        if ref.upper() in "SW":
            value = -value
    else:
        number = _number(text)
        if number is None:
            return None
        value = number
    return round(value, 7) if -limit <= value <= limit else None


def _number(text: str) -> float | None:
    """A decimal or an XMP rational ("1234/10")."""
    try:
        if "/" in text:
            top, bottom = text.split("/", 1)
            return float(top) / float(bottom)
        return float(text)
    except (ValueError, ZeroDivisionError):
        return None


def _altitude(text: str, ref: str) -> float | None:
    value = _number(text)
    if value is None or not -20_000 < value < 100_000:
        return None
    return round(-value if ref.strip() == "1" else value, 2)
