"""Our dates, positions and cameras against exiftool's, over every file of the corpus.

Each file goes through the real pipeline (ingest, processing inline); exiftool's answer is
read from its JSON with the same precedence (docs/metadata.md). Agreement must be at
least 98 % of the files where exiftool finds a date; every disagreement is printed.
Needs exiftool (Debian: libimage-exiftool-perl; CI installs it, see .ci/run).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import unavailable

pytestmark = pytest.mark.django_db

# exiftool's tag (with -G1 group) for each step of our precedence, and the tag that holds
# its offset when the value itself has none.
PRECEDENCE = [
    ("ExifIFD:DateTimeOriginal", ("ExifIFD:OffsetTimeOriginal", "ExifIFD:OffsetTime")),
    ("XMP-exif:DateTimeOriginal", ()),
    ("XMP-photoshop:DateCreated", ()),
    ("XMP-xmp:CreateDate", ()),
    ("ExifIFD:CreateDate", ("ExifIFD:OffsetTimeDigitized", "ExifIFD:OffsetTime")),  # = DateTimeDigitized
    ("XMP-exif:DateTimeDigitized", ()),
    ("Keys:CreationDate", ()),
    ("QuickTime:CreateDate", ()),
    ("IFD0:ModifyDate", ("ExifIFD:OffsetTime",)),
    ("XMP-xmp:ModifyDate", ()),
]
_DATE = re.compile(r"^(\d{4}):(\d{2}):(\d{2})(?: (\d{2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?)?\s*(Z|[+-]\d{2}:\d{2})?$")


def exiftool_date(text: str) -> tuple[datetime, int | None] | None:
    match = _DATE.match(str(text).strip())
    if not match or match.group(1) == "0000":
        return None
    year, month, day, hour, minute, second, zone = match.groups()
    try:
        value = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError:
        return None
    if zone is None:
        return value, None
    if zone == "Z":
        return value, 0
    sign = -1 if zone[0] == "-" else 1
    return value, sign * (int(zone[1:3]) * 60 + int(zone[4:6]))


def exiftool_choice(tags: dict) -> tuple[str, datetime, int | None] | None:
    for name, offset_tags in PRECEDENCE:
        parsed = exiftool_date(tags.get(name, ""))
        if parsed is None:
            continue
        value, offset = parsed
        for offset_tag in offset_tags:
            if offset is None and tags.get(offset_tag):
                offset = exiftool_date(f"2000:01:01 00:00:00{tags[offset_tag]}")[1]
        return name, value, offset
    return None


def corpus_files(corpus: Path) -> list[Path]:
    return sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix.lower() not in ("", ".md"))


def test_dates_gps_and_camera_agree_with_exiftool(alice, corpus, django_capture_on_commit_callbacks):
    from gallery.services.media import media_ingest

    exiftool = shutil.which("exiftool")
    if exiftool is None:
        unavailable("exiftool is not installed (Debian: libimage-exiftool-perl)")
    files = corpus_files(corpus)
    out = subprocess.run([exiftool, "-json", "-n", "-G1", "-a", "-time:all", "-gps:all", "-Composite:GPSLatitude",
                          "-Composite:GPSLongitude", "-Make", "-Model", *map(str, files)],
                         capture_output=True, check=False, timeout=120)
    theirs = {Path(entry["SourceFile"]): entry for entry in json.loads(out.stdout)}

    dated, agreed, disagreements = 0, 0, []
    for path in files:
        tags = theirs.get(path, {})
        body = path.read_bytes()
        with django_capture_on_commit_callbacks(execute=True):
            media = media_ingest(owner=alice, stream=io.BytesIO(body), size=len(body), filename=path.name).media
        media.refresh_from_db()
        problems = []
        choice = exiftool_choice(tags)
        if choice is None:
            if not media.taken_at_estimated:
                problems.append(f"we found a date ({media.details.get('taken_at_source')}), exiftool none")
        else:
            dated += 1
            source, value, offset = choice
            ours = media.taken_at_local()
            if media.taken_at_estimated or ours.replace(tzinfo=None) != value:
                problems.append(f"date: ours {ours.isoformat()} ({media.details.get('taken_at_source')}), "
                                f"exiftool {value.isoformat()} ({source})")
            elif offset is not None and media.taken_at_offset_minutes != offset:
                problems.append(f"offset: ours {media.taken_at_offset_minutes}, exiftool {offset} ({source})")
        lat, lon = tags.get("Composite:GPSLatitude"), tags.get("Composite:GPSLongitude")
        if lat is None or lon is None or (lat == 0 and lon == 0):
            if media.latitude is not None:
                problems.append(f"GPS: ours {media.latitude},{media.longitude}, exiftool none")
        elif media.latitude is None or abs(media.latitude - lat) > 1e-5 or abs(media.longitude - lon) > 1e-5:
            problems.append(f"GPS: ours {media.latitude},{media.longitude}, exiftool {lat},{lon}")
        make = str(tags.get("IFD0:Make") or tags.get("XMP-tiff:Make") or "").strip()
        model = str(tags.get("IFD0:Model") or tags.get("XMP-tiff:Model") or "").strip()
        if (media.camera_make.strip(), media.camera_model.strip()) != (make, model):
            problems.append(f"camera: ours {media.camera_make!r} {media.camera_model!r}, exiftool {make!r} {model!r}")
        if problems:
            disagreements.append(f"{path.relative_to(corpus)}: {'; '.join(problems)}")
        elif choice is not None:
            agreed += 1

    report = "\n".join(disagreements) or "none"
    print(f"\nexiftool agreement: {agreed}/{dated} files with a date; disagreements:\n{report}")
    assert dated >= 20, "exiftool found too few dates: is the corpus complete?"
    assert agreed / dated >= 0.98, report
    # Files without a date are not in the ratio, but inventing a date or a position is wrong too.
    assert not [d for d in disagreements if "exiftool none" in d], report
