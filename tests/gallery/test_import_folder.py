"""import_folder: a Takeout built in the test from corpus photos whose EXIF was stripped,
XMP sidecars, resuming, duplicates, albums from folders, the summary and the exit status."""

from __future__ import annotations

import io
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import TestCase
from PIL import Image

from gallery.models import Album, Media
from gallery.processing.exif import read_exif
from gallery.processing.sidecars import JsonIndex
from gallery.processing.xmp import read_xmp

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def journal_dir(settings, tmp_path):
    """A data dir (where the import journal lives) of the test's own."""
    settings.DATA_DIR = tmp_path / "data"


@pytest.fixture
def src(tmp_path) -> Path:
    """The folder to import (tmp_path itself holds the test's storage)."""
    folder = tmp_path / "src"
    folder.mkdir()
    return folder


def run(*args) -> str:
    """The command's output; what each commit queued (processing) runs as the worker would."""
    out = io.StringIO()
    with TestCase.captureOnCommitCallbacks(execute=True):
        call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def stripped(source: Path, target: Path, *, quality: int = 85) -> Path:
    """A copy of a photo without its EXIF and XMP: Pillow writes only what it is given."""
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.open(source).save(target, "JPEG", quality=quality)
    assert read_exif(target).taken_at is None and read_xmp(target).empty
    return target


def takeout_json(path: Path, *, taken: datetime, lat: float = 0.0, lon: float = 0.0, title: str = "",
                 description: str = "", favorited: bool = False) -> None:
    path.write_text(json.dumps({
        "title": title or path.name.split(".json")[0],
        "description": description,
        "creationTime": {"timestamp": "1700000000", "formatted": "Nov 14, 2023, 10:13:20 PM UTC"},
        "photoTakenTime": {"timestamp": str(int(taken.timestamp())), "formatted": "..."},
        "geoData": {"latitude": lat, "longitude": lon, "altitude": 0.0, "latitudeSpan": 0.0, "longitudeSpan": 0.0},
        "geoDataExif": {"latitude": 0.0, "longitude": 0.0, "altitude": 0.0},
        **({"favorited": True} if favorited else {}),
        "url": "https://photos.google.com/photo/AF1Qip",
    }))


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


LONG = "PXL_20190714_103005123_with_a_very_long_name_from_an_app"  # 56 characters before ".jpg"


def build_takeout(root: Path, corpus: Path) -> Path:
    photos = root / "Takeout" / "Google Photos"
    year = photos / "Photos from 2008"
    gps = corpus / "jpg" / "gps"
    stripped(gps / "DSCN0010.jpg", year / "DSCN0010.jpg")
    takeout_json(year / "DSCN0010.jpg.supplemental-metadata.json", taken=utc(2008, 10, 22, 14, 28, 39),
                 lat=43.4674483, lon=11.8851267, description="Lunch in Tuscany", favorited=True)
    # Two different photos both called IMG_1.jpg: Takeout names the second IMG_1(1).jpg and its JSON IMG_1.jpg(1).json
    stripped(gps / "DSCN0012.jpg", year / "IMG_1.jpg")
    takeout_json(year / "IMG_1.jpg.json", taken=utc(2008, 10, 23, 9, 0, 0), lat=48.8584, lon=2.2945)
    stripped(gps / "DSCN0021.jpg", year / "IMG_1(1).jpg")
    takeout_json(year / "IMG_1.jpg(1).json", taken=utc(2008, 10, 24, 18, 30, 0))  # geoData 0,0: no position
    # A long name: Takeout cuts the JSON's name at 46 characters before ".json"
    stripped(gps / "DSCN0025.jpg", year / f"{LONG}.jpg")
    takeout_json(year / f"{(LONG + '.jpg.supplemental-metadata')[:46]}.json", taken=utc(2019, 7, 14, 10, 30, 5))
    # An album folder holds the same photo again, with its JSON again
    album = photos / "Trip to Tuscany"
    album.mkdir()
    (album / "metadata.json").write_text(json.dumps({"title": "Tuscany 2008", "description": "", "access": "protected"}))
    shutil.copy(year / "DSCN0010.jpg", album / "DSCN0010.jpg")
    shutil.copy(year / "DSCN0010.jpg.supplemental-metadata.json", album / "DSCN0010.jpg.supplemental-metadata.json")
    (photos / "print-subscriptions.json").write_text("[]")
    return root / "Takeout"


def by_name(owner, name: str) -> Media:
    return Media.objects.get(owner=owner, original_filename=name)


def test_a_takeout_gets_its_dates_places_and_albums_from_the_sidecars(alice, src, corpus):
    out = run("import_folder", "alice", str(build_takeout(src, corpus)))
    assert "4 imported, 1 duplicates, 0 already imported, 0 failed" in out
    assert Media.objects.filter(owner=alice).count() == 4

    lunch = by_name(alice, "DSCN0010.jpg")
    assert lunch.status == "ready", lunch.error
    # photoTakenTime is a UTC moment; the zone comes from geoData's position (Europe/Rome, CEST)
    assert lunch.taken_at == utc(2008, 10, 22, 14, 28, 39) and not lunch.taken_at_estimated
    assert lunch.taken_at_local().isoformat() == "2008-10-22T16:28:39+02:00"
    assert lunch.details["taken_at_source"] == "sidecar:takeout"
    assert (lunch.latitude, lunch.longitude) == pytest.approx((43.4674483, 11.8851267))
    assert lunch.place_country == "Italy"
    assert lunch.description == "Lunch in Tuscany"
    assert lunch.camera_make == ""  # EXIF stripped: nothing invented
    tuscany = Album.objects.get(owner=alice, title="Tuscany 2008")
    assert list(tuscany.media.all()) == [lunch]
    assert list(Album.objects.get(owner=alice, is_favourites=True).media.all()) == [lunch]
    assert not Album.objects.filter(owner=alice, title__startswith="Photos from").exists()

    first, second = by_name(alice, "IMG_1.jpg"), by_name(alice, "IMG_1(1).jpg")
    assert first.taken_at == utc(2008, 10, 23, 9, 0, 0) and first.place_country == "France"
    assert first.taken_at_offset_minutes == 120  # Europe/Paris from the position
    assert second.taken_at == utc(2008, 10, 24, 18, 30, 0) and second.latitude is None  # geoData 0,0
    assert second.taken_at_offset_minutes == 120  # alice's own zone, Europe/Paris
    assert by_name(alice, f"{LONG}.jpg").taken_at == utc(2019, 7, 14, 10, 30, 5)

    # Processing again keeps what the sidecar said (it lives in details["sidecar"]).
    from gallery.processing.pipeline import media_process

    media_process(media_id=lunch.pk)
    lunch.refresh_from_db()
    assert lunch.taken_at == utc(2008, 10, 22, 14, 28, 39) and lunch.place_country == "Italy"


def test_embedded_dates_win_over_sidecars(alice, src, corpus):
    shutil.copy(corpus / "jpg" / "Canon_40D.jpg", src / "canon.jpg")
    takeout_json(src / "canon.jpg.json", taken=utc(2020, 1, 1, 12, 0, 0), lat=48.8584, lon=2.2945)
    run("import_folder", "alice", str(src))
    canon = by_name(alice, "canon.jpg")
    # EXIF DateTimeOriginal 2008:05:30 15:56:01, no offset; the sidecar's position gives Paris' zone
    assert canon.taken_at_local().isoformat() == "2008-05-30T15:56:01+02:00"
    assert canon.details["taken_at_source"] == "exif:DateTimeOriginal"
    assert canon.place_country == "France"  # no GPS in the file: the sidecar's position fills the gap


def test_xmp_sidecars_both_names(alice, src, corpus):
    gps = corpus / "jpg" / "gps"
    stripped(gps / "DSCN0010.jpg", src / "IMG_1.jpg")
    (src / "IMG_1.jpg.xmp").write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:dc="http://purl.org/dc/'
        'elements/1.1/" xmlns:xmp="http://ns.adobe.com/xap/1.0/" exif:DateTimeOriginal="2008-10-22T16:28:39+02:00"'
        ' exif:GPSLatitude="43,28.0469N" exif:GPSLongitude="11,53.1076E" xmp:Rating="5">'
        '<dc:subject><rdf:Bag><rdf:li>Tuscany</rdf:li><rdf:li>lunch</rdf:li></rdf:Bag></dc:subject>'
        '</rdf:Description></rdf:RDF></x:xmpmeta>')
    stripped(gps / "DSCN0012.jpg", src / "IMG_2.jpg")
    (src / "IMG_2.xmp").write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/">'
        '<photoshop:DateCreated>2008-10-22T16:29:49</photoshop:DateCreated></rdf:Description></rdf:RDF></x:xmpmeta>')
    out = run("import_folder", "alice", str(src))
    assert "2 imported" in out
    one, two = by_name(alice, "IMG_1.jpg"), by_name(alice, "IMG_2.jpg")
    assert one.taken_at_local().isoformat() == "2008-10-22T16:28:39+02:00"
    assert one.details["taken_at_source"] == "sidecar:exif:DateTimeOriginal"
    assert one.latitude == pytest.approx(43.4674483, abs=1e-6) and one.place_country == "Italy"
    assert sorted(one.tags.values_list("name", flat=True)) == ["Tuscany", "lunch"]
    assert one.details["rating"] == 5
    # No offset in the sidecar, no position: alice's zone (Europe/Paris, CEST)
    assert two.taken_at_local().isoformat() == "2008-10-22T16:29:49+02:00"


def test_a_run_stopped_by_the_quota_resumes_where_it_stopped(alice, src, corpus):
    files = sorted((corpus / "jpg" / "gps").glob("*.jpg"))[:3]
    for path in files:
        shutil.copy(path, src / path.name)
    alice.personal_quota_bytes = files[0].stat().st_size + 10
    alice.save()
    with pytest.raises(CommandError) as stopped:
        run("import_folder", "alice", str(src))
    assert stopped.value.returncode == 1
    assert Media.objects.filter(owner=alice).count() == 1

    alice.personal_quota_bytes = 10**9
    alice.save()
    out = run("import_folder", "alice", str(src))
    assert "2 imported, 0 duplicates, 1 already imported, 0 failed" in out
    out = run("import_folder", "alice", str(src))
    assert "0 imported, 0 duplicates, 3 already imported, 0 failed" in out
    assert Media.objects.filter(owner=alice).count() == 3


def test_without_the_journal_nothing_is_imported_twice(alice, src, corpus, settings):
    shutil.copy(corpus / "jpg" / "Canon_40D.jpg", src / "a.jpg")
    run("import_folder", "alice", str(src))
    shutil.rmtree(Path(settings.DATA_DIR) / "imports")
    assert "0 imported, 1 duplicates" in run("import_folder", "alice", str(src))
    assert Media.objects.filter(owner=alice).count() == 1


def test_duplicates_and_what_the_user_already_has(alice, bob, src, corpus):
    from gallery.services.media import media_ingest

    body = (corpus / "jpg" / "Nikon_D70.jpg").read_bytes()
    with TestCase.captureOnCommitCallbacks(execute=True):
        phone = media_ingest(owner=alice, stream=io.BytesIO(body), size=len(body), filename="from-phone.jpg").media
    (src / "a").mkdir()
    (src / "b").mkdir()
    (src / "a" / "nikon.jpg").write_bytes(body)
    (src / "b" / "nikon copy.jpg").write_bytes(body)
    takeout_json(src / "a" / "nikon.jpg.json", taken=utc(2008, 3, 15, 13, 52, 1), description="A bird")
    shutil.copy(corpus / "jpg" / "Pentax_K10D.jpg", src / "b" / "pentax.jpg")
    out = run("import_folder", "alice", str(src))
    assert "1 imported, 2 duplicates, 0 already imported, 0 failed" in out
    assert Media.objects.filter(owner=alice).count() == 2
    phone.refresh_from_db()
    # The copy already there gets the sidecar it lacked; its EXIF date still wins.
    assert phone.details["sidecar"]["description"] == "A bird" and phone.description == "A bird"
    assert phone.taken_at_local().replace(tzinfo=None) == datetime(2008, 3, 15, 9, 52, 1)
    # Another user's library is another library.
    assert "2 imported, 1 duplicates" in run("import_folder", str(src), "--user", "bob")


def test_albums_from_folders_quiet_and_errors(alice, src, corpus, capsys):
    (src / "Holidays").mkdir()
    (src / "Holidays" / "Rome").mkdir()
    shutil.copy(corpus / "jpg" / "Canon_40D.jpg", src / "Holidays" / "Rome" / "a.jpg")
    shutil.copy(corpus / "jpg" / "Pentax_K10D.jpg", src / "top.jpg")
    (src / ".hidden.jpg").write_bytes(b"not imported")
    assert run("import_folder", "alice", str(src), "--albums-from-folders", "--quiet") == ""
    assert [m.original_filename for m in Album.objects.get(owner=alice, title="Rome").media.all()] == ["a.jpg"]
    assert not Album.objects.filter(owner=alice, title="Holidays").exists()  # no files of its own
    assert Media.objects.filter(owner=alice).count() == 2
    with pytest.raises(CommandError, match="not a folder"):
        run("import_folder", "alice", str(src / "missing"))
    with pytest.raises(CommandError, match="no user"):
        run("import_folder", "nobody", str(src))
    with pytest.raises(CommandError, match="USER PATH"):
        run("import_folder", str(src))


def test_a_rerun_with_albums_from_folders_files_what_was_imported(alice, src, corpus):
    (src / "Rome").mkdir()
    shutil.copy(corpus / "jpg" / "Canon_40D.jpg", src / "Rome" / "a.jpg")
    run("import_folder", "alice", str(src))
    assert not Album.objects.filter(owner=alice, title="Rome").exists()
    out = run("import_folder", "alice", str(src), "--albums-from-folders")
    assert "0 imported, 0 duplicates, 1 already imported" in out
    assert [m.original_filename for m in Album.objects.get(owner=alice, title="Rome").media.all()] == ["a.jpg"]


def test_files_are_dated_by_their_modification_time(alice, src):
    import os

    note = src / "old-note.txt"
    note.write_text("written long ago")
    when = utc(2015, 3, 1, 12, 0)
    os.utime(note, (when.timestamp(), when.timestamp()))
    run("import_folder", "alice", str(src))
    media = by_name(alice, "old-note.txt")
    assert media.taken_at == when and media.taken_at_estimated


@pytest.mark.parametrize("media, jsons, expected", [
    ("IMG_1.jpg", ["IMG_1.jpg.json"], "IMG_1.jpg.json"),
    ("IMG_1.jpg", ["IMG_1.jpg.supplemental-metadata.json", "IMG_1.jpg.json"], "IMG_1.jpg.supplemental-metadata.json"),
    ("IMG_1(1).jpg", ["IMG_1.jpg.json", "IMG_1.jpg(1).json"], "IMG_1.jpg(1).json"),
    ("IMG_1(2).jpg", ["IMG_1.jpg.supplemental-metadata(2).json"], "IMG_1.jpg.supplemental-metadata(2).json"),
    ("IMG_1.jpg", ["IMG_1.jpg(1).json"], None),
    ("IMG_1.jpg", ["IMG_1.json"], "IMG_1.json"),
    ("IMG_1-edited.jpg", ["IMG_1.jpg.json"], "IMG_1.jpg.json"),
    ("IMG_1.MP4", ["IMG_1.HEIC.supplemental-metadata.json"], "IMG_1.HEIC.supplemental-metadata.json"),
    ("IMG_1.jpg", ["IMG_1.jpg.supplemental-me.json"], "IMG_1.jpg.supplemental-me.json"),
    ("IMG_10.jpg", ["IMG_1.jpg.json", "IMG_1.json"], None),
    ("Party (1).jpg", ["Party (1).jpg.json"], "Party (1).jpg.json"),
    (f"{LONG}.jpg", [f"{LONG[:46]}.json"], f"{LONG[:46]}.json"),
    (f"{LONG}.jpg", [f"{LONG[:47]}.json"], f"{LONG[:47]}.json"),
    (f"{LONG}(1).jpg", [f"{LONG[:46]}.json", f"{LONG[:46]}(1).json"], f"{LONG[:46]}(1).json"),
    (f"{LONG[:40]}.jpg", [f"{LONG[:40]}.jpg.supplementa.json"], f"{LONG[:40]}.jpg.supplementa.json"),
    (f"{LONG}.jpg", [f"{LONG[:30]}.json"], None),  # too short to be a cut name
])
def test_takeout_json_names(media, jsons, expected):
    assert JsonIndex.of(set(jsons)).sidecar_for(media) == expected
