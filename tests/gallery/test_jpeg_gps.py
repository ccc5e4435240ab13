"""gallery.processing.jpeg_gps: the position leaves a JPEG, nothing else does, the length stays.

Files with positions come from the corpus (EXIF GPS, little-endian) and from exiftool, which
writes a big-endian EXIF GPS directory and an XMP packet with GPS into copies of corpus files.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from gallery.processing.jpeg_gps import apply_patches, gps_patches
from tests.conftest import unavailable


def exiftool(*args: str, data: bytes | None = None) -> bytes:
    if shutil.which("exiftool") is None:
        unavailable("exiftool is not installed (apt-get install -y libimage-exiftool-perl)")
    return subprocess.run(["exiftool", *args], input=data, capture_output=True, check=True).stdout


def tags(data: bytes) -> dict:
    return json.loads(exiftool("-j", "-n", "-a", "-G1", "-", data=data))[0]


def gps_tags(data: bytes) -> dict:
    return {k: v for k, v in tags(data).items() if "GPS" in k}


def stripped(data: bytes) -> bytes:
    patches = gps_patches(data[: 256 * 1024])
    assert patches is not None
    out = apply_patches(data, 0, patches)
    assert len(out) == len(data)
    return out


def test_corpus_photos_lose_their_gps_and_keep_everything_else(corpus):
    files = sorted((corpus / "jpg" / "gps").glob("*.jpg"))
    assert files
    for path in files:
        data = path.read_bytes()
        assert gps_tags(data), path.name
        out = stripped(data)
        assert gps_tags(out) == {}, path.name
        before, after = tags(data), tags(out)
        for key in ("IFD0:Make", "IFD0:Model", "ExifIFD:DateTimeOriginal", "IFD0:Orientation"):
            assert before.get(key) == after.get(key), (path.name, key)
        Image.open(io.BytesIO(out)).load()


def test_big_endian_exif_and_xmp_gps_are_removed(corpus, tmp_path):
    made = tmp_path / "made.jpg"
    exiftool("-o", str(made), "-ExifByteOrder=Big-endian", "-exif:all=", "-tagsfromfile", "@", "-exif:all",
             "-GPSLatitude=48.8566", "-GPSLatitudeRef=N", "-GPSLongitude=2.3522", "-GPSLongitudeRef=E",
             "-XMP-exif:GPSLatitude=48.8566", "-XMP-exif:GPSLongitude=2.3522", "-Orientation=6", "-n",
             str(corpus / "jpg" / "Canon_40D.jpg"))
    data = made.read_bytes()
    found = gps_tags(data)
    assert any(k.startswith("GPS:") for k in found) and any(k.startswith("XMP") for k in found), found
    assert data[data.index(b"Exif\x00\x00") + 6:][:2] == b"MM"
    out = stripped(data)
    assert gps_tags(out) == {}
    assert tags(out)["IFD0:Orientation"] == 6
    Image.open(io.BytesIO(out)).load()


def test_a_jpeg_without_gps_is_left_alone(corpus):
    data = (corpus / "jpg" / "orientation" / "portrait_6.jpg").read_bytes()
    assert gps_patches(data) == []


def test_what_cannot_be_read_to_the_end_is_refused(corpus):
    data = (corpus / "jpg" / "gps" / "DSCN0010.jpg").read_bytes()
    assert gps_patches(data[:1000]) is None  # the EXIF segment is longer than the head
    assert gps_patches(b"\x89PNG\r\n\x1a\n" + data[8:]) is None
    assert gps_patches(b"") is None


def test_patches_apply_across_any_chunking(corpus):
    data = (corpus / "jpg" / "gps" / "DSCN0025.jpg").read_bytes()
    patches = gps_patches(data)
    whole = apply_patches(data, 0, patches)
    for size in (1, 7, 100, 4096):
        pieces = [apply_patches(data[i:i + size], i, patches) for i in range(0, 20_000, size)]
        assert b"".join(pieces) == whole[:len(b"".join(pieces))], size


@settings(derandomize=True, max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(0, 12_000), flips=st.lists(st.tuples(st.integers(0, 12_000), st.integers(0, 255)),
                                                  max_size=8))
def test_damaged_headers_never_raise(cut, flips):
    data = bytearray(Path(__file__).resolve().parents[3].joinpath(
        "shared", "corpus", "jpg", "gps", "DSCN0025.jpg").read_bytes()[:12_000])
    for at, value in flips:
        if at < len(data):
            data[at] = value
    result = gps_patches(bytes(data[:cut]))
    assert result is None or all(isinstance(at, int) and at >= 0 for at, _ in result)
