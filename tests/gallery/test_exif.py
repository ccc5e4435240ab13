"""EXIF reading: values must match what exiftool reads, and damage must never raise.

Expected values come from `exiftool -n` (ExifTool 12.57, Debian libimage-exiftool-perl),
recorded here as literals so the tests do not need exiftool installed.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from PIL import ExifTags, Image

from gallery.processing.exif import RAW_VALUE_LIMIT, ExifData, read_exif

# exiftool -n -DateTimeOriginal -GPSLatitude -GPSLongitude <file>
EXIFTOOL_GPS = {
    "DSCN0010.jpg": ("2008:10:22 16:28:39", 43.4674483333333, 11.8851266666639),
    "DSCN0012.jpg": ("2008:10:22 16:29:49", 43.4671566666639, 11.8853949999972),
    "DSCN0021.jpg": ("2008:10:22 16:38:20", 43.4670816666639, 11.8845383333306),
    "DSCN0042.jpg": ("2008:10:22 17:00:07", 43.464455, 11.8814783333333),
}


def exiftool_date(text: str) -> datetime:
    return datetime.strptime(text, "%Y:%m:%d %H:%M:%S")


@pytest.mark.parametrize("name", sorted(EXIFTOOL_GPS))
def test_gps_and_dates_match_exiftool(corpus: Path, name: str) -> None:
    taken, lat, lon = EXIFTOOL_GPS[name]
    data = read_exif(corpus / "jpg" / "gps" / name)
    assert data.error is None
    assert data.taken_at == exiftool_date(taken)
    assert data.taken_at.tzinfo is None  # naive wall-clock time
    assert data.latitude == pytest.approx(lat, abs=1e-6)
    assert data.longitude == pytest.approx(lon, abs=1e-6)
    assert data.altitude is None  # exiftool: GPSAltitudeRef only, no GPSAltitude
    assert (data.make, data.model) == ("NIKON", "COOLPIX P6000")


def test_nikon_coolpix_exposure(corpus: Path) -> None:
    # exiftool -n: ExposureTime 0.01333333333, FNumber 5.9, ISO 64, FocalLength 24,
    # GPSDateStamp 2008:10:23, GPSTimeStamp 14:27:07.24
    data = read_exif(corpus / "jpg" / "gps" / "DSCN0010.jpg")
    assert (data.exposure, data.aperture, data.iso, data.focal_length) == ("1/75", 5.9, 64, 24.0)
    assert data.orientation == 1
    assert data.gps_utc == datetime(2008, 10, 23, 14, 27, 7, tzinfo=timezone.utc)


def test_canon_40d(corpus: Path) -> None:
    # exiftool -n: DateTimeOriginal 2008:05:30 15:56:01, SubSecTimeOriginal 00,
    # Make Canon, Model Canon EOS 40D, ExposureTime 0.00625, FNumber 7.1, ISO 100,
    # FocalLength 135, Orientation 1; GPS IFD holds only GPSVersionID.
    data = read_exif(corpus / "jpg" / "Canon_40D.jpg")
    assert data.taken_at == datetime(2008, 5, 30, 15, 56, 1)
    assert data.subsec == "00"
    assert (data.make, data.model) == ("Canon", "Canon EOS 40D")
    assert (data.exposure, data.aperture, data.iso, data.focal_length) == ("1/160", 7.1, 100, 135.0)
    assert data.latitude is None and data.longitude is None
    assert data.orientation == 1
    assert data.error is None


def test_nikon_d70(corpus: Path) -> None:
    # exiftool -n: DateTimeOriginal 2008:03:15 09:52:01, Make NIKON CORPORATION,
    # Model NIKON D70, ExposureTime 0.005, FNumber 9, ISO 200, FocalLength 100.
    # (exiftool's Lens "100.0 mm f/2.8" comes from the MakerNote, which we do not parse.)
    data = read_exif(corpus / "jpg" / "Nikon_D70.jpg")
    assert data.taken_at == datetime(2008, 3, 15, 9, 52, 1)
    assert (data.make, data.model) == ("NIKON CORPORATION", "NIKON D70")
    assert (data.exposure, data.aperture, data.iso, data.focal_length) == ("1/200", 9.0, 200, 100.0)
    assert data.offset_minutes is None


def test_iphone_heic(corpus: Path) -> None:
    # exiftool -n: DateTimeOriginal 2021:04:11 15:47:53, OffsetTimeOriginal -05:00,
    # SubSecTimeOriginal 054, GPSLatitude 39.0513444444444, GPSLongitude -94.2887722222222,
    # GPSAltitude 260.5606383, LensModel "iPhone 11 Pro Max back triple camera 4.25mm f/1.8",
    # ExposureTime 0.002557544757, FNumber 1.8, ISO 32, FocalLength 4.25
    data = read_exif(corpus / "heic" / "IMG_5195.HEIC")
    assert data.taken_at == datetime(2021, 4, 11, 15, 47, 53)
    assert data.offset_minutes == -300
    assert data.subsec == "054"
    assert data.latitude == pytest.approx(39.0513444444444, abs=1e-6)
    assert data.longitude == pytest.approx(-94.2887722222222, abs=1e-6)  # west is negative
    assert data.altitude == pytest.approx(260.5606383, abs=0.01)
    assert (data.make, data.model) == ("Apple", "iPhone 11 Pro Max")
    assert data.lens == "iPhone 11 Pro Max back triple camera 4.25mm f/1.8"
    assert (data.exposure, data.aperture, data.iso, data.focal_length) == ("1/391", 1.8, 32, 4.25)


def test_exif_after_an_xmp_segment_is_found(corpus: Path) -> None:
    # Despite its name this file has EXIF, in a second APP1 after a 26 kB XMP one (where
    # plain exifread gives up). exiftool -n: ModifyDate 2014:09:22 10:56:35, Orientation 1,
    # Artist CREDIT, XPTitle "Der Goalie bin ig"; no DateTimeOriginal.
    data = read_exif(corpus / "jpg" / "xmp" / "no_exif.jpg")
    assert data.taken_at == datetime(2014, 9, 22, 10, 56, 35)
    assert data.orientation == 1
    assert data.raw["Image Artist"] == "CREDIT"
    assert data.raw["Image XPTitle"] == "Der Goalie bin ig"  # UTF-16 bytes decoded
    assert data.error is None


@pytest.mark.parametrize("n", range(1, 9))
def test_orientation_tag(corpus: Path, n: int) -> None:
    assert read_exif(corpus / "jpg" / "orientation" / f"portrait_{n}.jpg").orientation == n


def test_raw_is_json_safe_and_skips_blobs(corpus: Path) -> None:
    dscn0010 = corpus / "jpg" / "gps" / "DSCN0010.jpg"
    for path in [corpus / "jpg" / "Canon_40D.jpg", dscn0010, corpus / "heic" / "IMG_5195.HEIC"]:
        raw = read_exif(path).raw
        assert raw and all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items())
        json.dumps(raw)
        assert not any("Thumbnail" in k and not isinstance(v, str) for k, v in raw.items())
        assert "JPEGThumbnail" not in raw and not any("MakerNote" in k for k in raw)
        assert all("\x00" not in v for v in raw.values())
    assert read_exif(dscn0010).raw["EXIF DateTimeOriginal"] == "2008:10:22 16:28:39"


def test_invalid_corpus_files_never_raise(corpus: Path) -> None:
    for path in [corpus / "jpg" / "corrupted.jpg", *sorted((corpus / "jpg" / "invalid").glob("*.jpg"))]:
        data = read_exif(path)
        assert isinstance(data, ExifData)
    # exiftool -n on corrupted.jpg: DateTimeOriginal 2015:09:08 11:02:17, Make OLYMPUS IMAGING CORP.
    data = read_exif(corpus / "jpg" / "corrupted.jpg")
    assert data.taken_at == datetime(2015, 9, 8, 11, 2, 17)
    assert data.make == "OLYMPUS IMAGING CORP."  # trailing spaces stripped


# --- files made in the test -----------------------------------------------------------------
def jpeg_with_exif(exif: Image.Exif) -> io.BytesIO:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "grey").save(buf, "JPEG", exif=exif.tobytes())
    buf.seek(0)
    return buf


def make_exif(base: dict[int, object] | None = None, exif_ifd: dict[int, object] | None = None,
              gps: dict[int, object] | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif.update(base or {})
    if exif_ifd:
        exif.get_ifd(ExifTags.IFD.Exif).update(exif_ifd)
    if gps:
        exif.get_ifd(ExifTags.IFD.GPSInfo).update(gps)
    return exif


def test_southern_western_and_below_sea_level() -> None:
    G = ExifTags.GPS
    exif = make_exif(gps={
        G.GPSLatitudeRef: "S", G.GPSLatitude: (33.0, 51.0, 54.0),
        G.GPSLongitudeRef: "W", G.GPSLongitude: (70.0, 30.0, 0.0),
        G.GPSAltitudeRef: b"\x01", G.GPSAltitude: 12.5,
    })
    data = read_exif(jpeg_with_exif(exif))
    assert data.latitude == pytest.approx(-33.865, abs=1e-6)
    assert data.longitude == pytest.approx(-70.5, abs=1e-6)
    assert data.altitude == -12.5


@pytest.mark.parametrize(
    "lat, lon",
    [
        ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),  # "null island": a camera without a fix
        ((95.0, 0.0, 0.0), (10.0, 0.0, 0.0)),
        ((45.0, 0.0, 0.0), (190.0, 0.0, 0.0)),
    ],
)
def test_null_island_and_out_of_range_gps_are_dropped(lat: tuple, lon: tuple) -> None:
    G = ExifTags.GPS
    gps = {G.GPSLatitudeRef: "N", G.GPSLatitude: lat, G.GPSLongitudeRef: "E", G.GPSLongitude: lon}
    exif = make_exif(gps=gps)
    data = read_exif(jpeg_with_exif(exif))
    assert data.latitude is None and data.longitude is None


def test_offsets_subsec_and_fallback_dates() -> None:
    T = ExifTags.Base
    exif = make_exif(
        base={T.DateTime: "2020:01:02 03:04:05", T.Make: "Canon\x00\x00  "},
        exif_ifd={T.DateTimeDigitized: "2019:12:31 23:59:58", T.OffsetTime: "+00:00",
                  T.SubsecTime: "25", T.DateTimeOriginal: "0000:00:00 00:00:00"},
    )
    data = read_exif(jpeg_with_exif(exif))
    # Zeroed DateTimeOriginal (clock never set) falls back to DateTimeDigitized.
    assert data.taken_at == datetime(2019, 12, 31, 23, 59, 58)
    assert data.offset_minutes == 0  # UTC is an offset, not a missing one
    assert data.subsec == "25"
    assert data.make == "Canon"


def test_half_hour_offset() -> None:
    exif = make_exif(exif_ifd={ExifTags.Base.DateTimeOriginal: "2024:03:01 12:00:00",
                               ExifTags.Base.OffsetTimeOriginal: "+05:30"})
    assert read_exif(jpeg_with_exif(exif)).offset_minutes == 330


def test_very_long_values_are_truncated() -> None:
    exif = make_exif(base={ExifTags.Base.ImageDescription: "x" * 5000})
    assert len(read_exif(jpeg_with_exif(exif)).raw["Image ImageDescription"]) == RAW_VALUE_LIMIT


def test_damaged_exif_returns_partial_data_and_an_error(corpus: Path) -> None:
    data = (corpus / "jpg" / "Canon_40D.jpg").read_bytes()
    start = data.index(b"Exif\x00\x00")
    # Cut inside the EXIF block: IFD0 survives, the rest is gone.
    cut = read_exif(io.BytesIO(data[: start + 300]))
    assert cut.make == "Canon"
    assert cut.error and "damaged EXIF" in cut.error
    # An unknown byte order: nothing readable, but no exception either.
    garbled = bytearray(data)
    garbled[start + 6 : start + 8] = b"XX"
    broken = read_exif(io.BytesIO(bytes(garbled)))
    assert broken.taken_at is None and broken.error


def test_files_without_exif_are_not_errors(corpus: Path) -> None:
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    png.seek(0)
    for source in [png, io.BytesIO(b"plain text"), corpus / "jpg" / "invalid" / "image01551.jpg"]:
        data = read_exif(source)
        assert data.error is None and data.taken_at is None and data.raw == {}


def test_missing_file_is_an_error_not_an_exception(tmp_path: Path) -> None:
    assert "cannot read file" in (read_exif(tmp_path / "missing.jpg").error or "")


def test_stream_position_is_restored(corpus: Path) -> None:
    stream = io.BytesIO((corpus / "jpg" / "Canon_40D.jpg").read_bytes())
    stream.seek(7)
    assert read_exif(stream).model == "Canon EOS 40D"
    assert stream.tell() == 7
