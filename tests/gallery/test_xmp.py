"""XMP: hand-made packets in every container we read, corpus files, hostile XML, and the
pipeline turning keywords into tags and XMP dates into taken_at."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from gallery.processing.xmp import (
    JPEG_XMP_PREFIX,
    NAMESPACES,
    RDF,
    parse_gps_coordinate,
    parse_xmp,
    parse_xmp_date,
    read_xmp,
    read_xmp_sidecar,
)


def packet(fields: str, attributes: str = "") -> bytes:
    ns = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in NAMESPACES.items())
    return (f'<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
            f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF}">'
            f'<rdf:Description rdf:about="" {ns} {attributes}>{fields}</rdf:Description>'
            f'</rdf:RDF></x:xmpmeta>\n<?xpacket end="w"?>').encode("utf-8")


FULL = packet(
    """<exif:DateTimeOriginal>2019-07-14T10:30:05.25+02:00</exif:DateTimeOriginal>
    <exif:GPSLatitude>41,53.4N</exif:GPSLatitude><exif:GPSLongitude>12,29,24.5E</exif:GPSLongitude>
    <exif:GPSAltitude>215/10</exif:GPSAltitude><exif:GPSAltitudeRef>0</exif:GPSAltitudeRef>
    <dc:description><rdf:Alt><rdf:li xml:lang="it">Il Colosseo</rdf:li>
      <rdf:li xml:lang="x-default">The Colosseum</rdf:li></rdf:Alt></dc:description>
    <dc:subject><rdf:Bag><rdf:li>Rome</rdf:li><rdf:li>holiday</rdf:li><rdf:li>Rome</rdf:li>
      <rdf:li> </rdf:li></rdf:Bag></dc:subject>""",
    'xmp:Rating="4" xmp:CreateDate="2019-07-14T10:31:00Z" tiff:Make="FUJIFILM" tiff:Model="X-T3"',
)


def test_a_full_packet():
    data = parse_xmp(FULL)
    assert data.error is None
    original = data.dates["exif:DateTimeOriginal"]
    assert (original.value, original.offset_minutes) == (datetime(2019, 7, 14, 10, 30, 5), 120)
    created = data.dates["xmp:CreateDate"]
    assert (created.value, created.offset_minutes) == (datetime(2019, 7, 14, 10, 31), 0)
    assert data.latitude == pytest.approx(41 + 53.4 / 60)
    assert data.longitude == pytest.approx(12 + 29 / 60 + 24.5 / 3600)
    assert data.altitude == 21.5
    assert data.description == "The Colosseum"
    assert data.subjects == ["Rome", "holiday"]
    assert data.rating == 4
    assert (data.make, data.model) == ("FUJIFILM", "X-T3")


@pytest.mark.parametrize("text, expected, offset", [
    ("2008-03-15T09:52:01-04:00", datetime(2008, 3, 15, 9, 52, 1), -240),
    ("2008:03:15 09:52:01", datetime(2008, 3, 15, 9, 52, 1), None),  # exiftool's spelling
    ("2013-09-24T15:13+02:00", datetime(2013, 9, 24, 15, 13), 120),  # no seconds
    ("2003-08-31", datetime(2003, 8, 31), None),  # a day alone: midnight, no zone
    ("2021-04-11T15:47:53", datetime(2021, 4, 11, 15, 47, 53), None),
])
def test_dates(text, expected, offset):
    date = parse_xmp_date(text)
    assert (date.value, date.offset_minutes) == (expected, offset)


@pytest.mark.parametrize("text", ["2003", "2003-08", "0000-00-00T00:00:00", "yesterday", "2019-02-30T10:00:00", ""])
def test_dates_too_vague_or_wrong_are_none(text):
    assert parse_xmp_date(text) is None


@pytest.mark.parametrize("text, refs, expected", [
    ("43,28.0946N", "NS", 43.4682433), ("11,52.8103E", "EW", 11.8801717), ("33,51,54.5S", "NS", -33.8651389),
    ("118,14.5W", "EW", -118.2416667), ("-12.5", "EW", -12.5), ("91,0N", "NS", None), ("12,0E", "NS", None),
])
def test_gps_coordinates(text, refs, expected):
    value = parse_gps_coordinate(text, refs, 90 if refs == "NS" else 180)
    assert value == (pytest.approx(expected, abs=1e-6) if expected is not None else None)


def test_zero_zero_is_no_position():
    data = parse_xmp(packet("<exif:GPSLatitude>0,0.0N</exif:GPSLatitude><exif:GPSLongitude>0,0.0E</exif:GPSLongitude>"))
    assert data.latitude is None and data.longitude is None


def test_hostile_xml_is_refused_not_expanded():
    bomb = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
            b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
            + packet("<dc:description>&c;</dc:description>"))
    data = parse_xmp(bomb)
    assert data.error and "aaaa" not in data.description
    external = (b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                + packet("<dc:description>&e;</dc:description>"))
    data = parse_xmp(external)
    assert data.error and "root" not in data.description


def test_damaged_packets_never_raise():
    for broken in (FULL[:200], b"<x:xmpmeta><rdf:RDF>", b"\x00\xff" * 50, FULL.replace(b"</dc:subject>", b"")):
        data = parse_xmp(broken)
        assert data.error


def jpeg_with(xmp: bytes | None) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(out, "JPEG", **({"xmp": xmp} if xmp else {}))
    return out.getvalue()


def test_jpeg_app1():
    body = jpeg_with(FULL)
    assert JPEG_XMP_PREFIX in body  # Pillow wrote the standard APP1 segment
    assert read_xmp(io.BytesIO(body)).subjects == ["Rome", "holiday"]
    assert read_xmp(io.BytesIO(jpeg_with(None))).empty


@pytest.mark.parametrize("compressed", [False, True])
def test_png_itxt(compressed):
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", FULL.decode("utf-8"), zip=compressed)
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "PNG", pnginfo=info)
    data = read_xmp(io.BytesIO(out.getvalue()))
    assert data.description == "The Colosseum" and data.rating == 4


def box(kind: bytes, payload: bytes) -> bytes:
    import struct

    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def test_packet_inside_an_iso_bmff_container(tmp_path):
    # MP4/MOV keep XMP in a top-level uuid box (or moov/udta/XMP_), after or before the media data.
    uuid_xmp = b"\xbe\x7a\xcf\xcb\x97\xa9\x42\xe8\x9c\x71\x99\x94\x91\xe3\xaf\xac"
    mp4 = tmp_path / "clip.mp4"
    mp4.write_bytes(box(b"ftyp", b"mp42\x00\x00\x00\x00mp42isom") + box(b"mdat", b"\x00" * 100_000)
                    + box(b"moov", box(b"mvhd", b"\x00" * 100)) + box(b"uuid", uuid_xmp + FULL))
    assert read_xmp(mp4).dates["exif:DateTimeOriginal"].offset_minutes == 120
    # Bytes that look like XMP deep in the media data are not searched for (nor read).
    deep = tmp_path / "deep.mp4"
    deep.write_bytes(box(b"ftyp", b"mp42\x00\x00\x00\x00mp42isom") + box(b"mdat", b"\x00" * (5 << 20) + FULL))
    assert read_xmp(deep).empty


def test_sidecar(tmp_path):
    sidecar = tmp_path / "IMG_1.jpg.xmp"
    sidecar.write_bytes(FULL)
    assert read_xmp_sidecar(sidecar).subjects == ["Rome", "holiday"]
    (tmp_path / "empty.xmp").write_bytes(b"")
    assert read_xmp_sidecar(tmp_path / "empty.xmp").empty


def test_corpus_files(corpus: Path):
    # exiftool -xmp:all: XMP-dc:Subject XMP, Blue Square, test file, Photoshop, .jpg;
    # XMP-xmp:CreateDate 2005:09:07 15:07:40-07:00
    blue = read_xmp(corpus / "jpg" / "xmp" / "BlueSquare.jpg")
    assert blue.subjects == ["XMP", "Blue Square", "test file", "Photoshop", ".jpg"]
    assert (blue.dates["xmp:CreateDate"].value, blue.dates["xmp:CreateDate"].offset_minutes) == (
        datetime(2005, 9, 7, 15, 7, 40), -420)
    # XMP-exif:DateTimeOriginal 2008:03:15 09:52:01-04:00 (the EXIF one has no zone)
    nikon = read_xmp(corpus / "jpg" / "Nikon_D70.jpg")
    assert nikon.dates["exif:DateTimeOriginal"].offset_minutes == -240
    # photoshop:DateCreated 2003:08:31 (a day without a time)
    long = read_xmp(corpus / "jpg" / "long_description.jpg")
    assert long.dates["photoshop:DateCreated"].value == datetime(2003, 8, 31) and long.description
    # An iPhone HEIC: XMP-photoshop:DateCreated 2021:04:11 15:47:53
    heic = read_xmp(corpus / "heic" / "IMG_5195.HEIC")
    assert heic.dates["photoshop:DateCreated"].value == datetime(2021, 4, 11, 15, 47, 53)
    assert read_xmp(corpus / "jpg" / "Canon_40D.jpg").empty


# --- the pipeline -------------------------------------------------------------------------
def ingest(owner, path_or_bytes, name, django_capture_on_commit_callbacks):
    from gallery.services.media import media_ingest

    body = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    with django_capture_on_commit_callbacks(execute=True):
        result = media_ingest(owner=owner, stream=io.BytesIO(body), size=len(body), filename=name)
    result.media.refresh_from_db()
    return result.media


@pytest.mark.django_db
def test_keywords_become_tags_and_the_xmp_date_is_taken(alice, corpus, django_capture_on_commit_callbacks):
    from gallery.processing.pipeline import media_process

    media = ingest(alice, corpus / "jpg" / "xmp" / "BlueSquare.jpg", "blue.jpg", django_capture_on_commit_callbacks)
    assert media.status == "ready", media.error
    assert sorted(media.tags.values_list("name", flat=True)) == [".jpg", "Blue Square", "Photoshop", "XMP", "test file"]
    assert all(t.owner_id == alice.pk for t in media.tags.all())
    assert media.description.startswith("XMPFiles BlueSquare test file")
    # xmp:CreateDate 15:07:40-07:00 comes before IFD0 DateTime 15:09:51 (no zone)
    assert media.taken_at_local().isoformat() == "2005-09-07T15:07:40-07:00"
    assert media.details["taken_at_source"] == "xmp:CreateDate" and not media.taken_at_estimated
    # A tag removed by its owner stays removed when the media is processed again.
    media.tags.remove(media.tags.get(name="XMP"))
    media_process(media_id=media.pk)
    assert sorted(media.tags.values_list("name", flat=True)) == [".jpg", "Blue Square", "Photoshop", "test file"]


@pytest.mark.django_db
def test_a_manual_date_wins(alice, corpus, django_capture_on_commit_callbacks, monkeypatch):
    from gallery.models import Media
    from gallery.processing.pipeline import media_process

    media = ingest(alice, corpus / "jpg" / "Canon_40D.jpg", "c.jpg", django_capture_on_commit_callbacks)
    typed = datetime.fromisoformat("1999-12-31T23:59:00+00:00")
    if any(f.name == "taken_at_manual" for f in Media._meta.get_fields()):
        Media.objects.filter(pk=media.pk).update(taken_at=typed, taken_at_manual=True)
    else:  # the flag lives on another branch; the pipeline reads it with getattr
        Media.objects.filter(pk=media.pk).update(taken_at=typed)
        monkeypatch.setattr(Media, "taken_at_manual", True, raising=False)
    media_process(media_id=media.pk)
    media.refresh_from_db()
    assert media.taken_at == typed and media.status == "ready"


@pytest.mark.django_db
def test_a_video_with_xmp_written_by_exiftool(alice, tmp_path, django_capture_on_commit_callbacks):
    """XMP (step 2) comes before the QuickTime creation date (step 4); its keywords become tags."""
    import shutil
    import subprocess

    from tests.conftest import unavailable
    from tests.gallery.test_video import make_clip

    exiftool = shutil.which("exiftool")
    if exiftool is None:
        unavailable("exiftool is not installed (Debian: libimage-exiftool-perl)")
    clip = make_clip(tmp_path / "clip.mp4", seconds=1.0, audio=False)
    subprocess.run([exiftool, "-q", "-overwrite_original", "-QuickTime:CreateDate=2016:01:01 00:00:00",
                    "-XMP-exif:DateTimeOriginal=2015:06:01 12:00:00+03:00", "-XMP-dc:Subject=beach", str(clip)],
                   check=True, timeout=60)
    assert read_xmp(clip).subjects == ["beach"]
    media = ingest(alice, clip, "clip.mp4", django_capture_on_commit_callbacks)
    assert media.status == "ready", media.error
    assert media.taken_at_local().isoformat() == "2015-06-01T12:00:00+03:00"
    assert media.details["taken_at_source"] == "exif:DateTimeOriginal"
    assert list(media.tags.values_list("name", flat=True)) == ["beach"]
