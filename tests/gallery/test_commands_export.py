"""manage.py export and /api/v1/export/: the zip is unzipped and compared by SHA-256."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tracemalloc
import uuid
import zipfile
from datetime import datetime, timezone

import pytest
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from gallery.models import Album, Export, Media, Tag
from gallery.operations.export import export_write
from gallery.services.library import album_items_add
from gallery.services.media import media_record
from gallery.storage import media_storage, original_key

pytestmark = pytest.mark.django_db


def stored(owner, data: bytes, filename: str, **fields) -> Media:
    media_id = uuid.uuid4()
    key = media_storage().save(original_key(user_id=owner.pk, media_id=media_id, filename=filename), ContentFile(data))
    media = media_record(owner=owner, media_id=media_id, key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                         filename=filename, content_type=None, status=Media.Status.READY).media
    if fields:
        Media.objects.filter(pk=media.pk).update(**fields)
        media.refresh_from_db()
    return media


@pytest.fixture
def library(alice, bob, alice_api, upload, corpus):
    assert upload(alice_api, corpus / "jpg" / "Canon_40D.jpg").status_code == 201
    when = datetime(2019, 7, 14, 10, 0, tzinfo=timezone.utc)
    # Two files with the same name in the same month: the second becomes "note (2).txt".
    first = stored(alice, b"first note", "note.txt", taken_at=when, taken_at_offset_minutes=120,
                   latitude=48.85, longitude=2.35, place_city="Paris", place_country="France",
                   camera_make="Canon", camera_model="EOS", details={"description": "At the lake", "rating": 4})
    second = stored(alice, b"second note", "NOTE.txt", taken_at=when.replace(minute=5))
    stored(alice, b"in the trash", "trashed.txt", trashed_at=when)
    stored(bob, b"bob's", "bob.txt")
    first.tags.add(Tag.objects.create(owner=alice, name="summer"))
    holiday = Album.objects.create(owner=alice, title="Holiday")
    album_items_add(album=holiday, media_ids=[first.pk, second.pk])
    return first, second


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_zip(data: bytes, owner) -> dict:
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    names = set(archive.namelist())
    media = list(Media.objects.visible_to(owner))
    docs = {}
    for name in names - {"albums.json", "missing.json"}:
        if name.endswith(".json"):
            doc = json.loads(archive.read(name))
            assert name[:-5] in names
            assert digest(archive.read(name[:-5])) == doc["sha256"]
            docs[doc["id"]] = (name[:-5], doc)
    assert sorted(docs) == sorted(str(m.pk) for m in media)
    for item in media:
        assert docs[str(item.pk)][1]["sha256"] == item.sha256
    return {"archive": archive, "docs": docs, "albums": json.loads(archive.read("albums.json"))}


def test_export_command_writes_every_original_with_its_metadata(library, alice, tmp_path):
    first, second = library
    out = tmp_path / "alice.zip"
    stdout = io.StringIO()
    call_command("export", "alice", "--out", str(out), stdout=stdout)
    assert "exported 3 media" in stdout.getvalue()
    found = check_zip(out.read_bytes(), alice)
    path, doc = found["docs"][str(first.pk)]
    assert path == "2019/07/note.txt"
    assert found["docs"][str(second.pk)][0] == "2019/07/NOTE (2).txt"
    assert doc["taken_at"] == "2019-07-14T12:00:00+02:00" and doc["taken_at_offset_minutes"] == 120
    assert doc["gps"] == {"latitude": 48.85, "longitude": 2.35, "altitude": None}
    assert doc["place"]["city"] == "Paris" and doc["camera"] == {"make": "Canon", "model": "EOS"}
    assert doc["tags"] == ["summer"] and doc["albums"] == ["Holiday"]
    assert doc["description"] == "At the lake" and doc["rating"] == 4
    assert "description" not in found["docs"][str(second.pk)][1]
    holiday = next(a for a in found["albums"]["albums"] if a["title"] == "Holiday")
    assert sorted(holiday["items"]) == ["2019/07/NOTE (2).txt", "2019/07/note.txt"]
    photo = next(d for _, d in found["docs"].values() if d["original_filename"] == "Canon_40D.jpg")
    assert photo["camera"]["make"] == "Canon" and photo["taken_at_estimated"] is False
    assert not any("trashed" in n for n in found["archive"].namelist())


def test_export_command_errors(alice, tmp_path):
    with pytest.raises(CommandError, match="no user"):
        call_command("export", "nobody", "--out", str(tmp_path / "x.zip"))
    with pytest.raises(CommandError, match="no folder"):
        call_command("export", "alice", "--out", str(tmp_path / "missing" / "x.zip"))


def test_export_streams_in_constant_memory(alice, tmp_path):
    size = 24 * 2**20
    big = stored(alice, os.urandom(size), "big.bin")
    stored(alice, os.urandom(size // 2), "half.bin")
    tracemalloc.start()
    try:
        with open(tmp_path / "big.zip", "wb") as out:
            export_write(user=alice, storage=media_storage(), out=out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, peak  # the files are 36 MiB together
    with zipfile.ZipFile(tmp_path / "big.zip") as archive:
        name = next(n for n in archive.namelist() if n.endswith("big.bin"))
        assert digest(archive.read(name)) == big.sha256


def test_export_api_job_then_download_by_the_owner_only(storage, library, alice, alice_api, bob_api,
                                                          django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_api.post("/api/v1/export/")
    assert response.status_code == 202, response.content
    status = alice_api.get(response.json()["url"]).json()
    assert status["state"] == "ready" and status["media_count"] == 3
    download = status["download_url"]
    assert bob_api.get(response.json()["url"]).status_code == 404
    assert bob_api.get(download).status_code == 404
    assert bob_api.get(download).json()["error"] == "not_found"
    assert alice_api.get("/api/v1/export/not-a-uuid/").json()["error"] == "not_found"
    assert alice_api.get("/api/v1/export/not-a-uuid/download").status_code == 404
    assert APIClient().get(download).status_code == 401
    got = alice_api.get(download)
    assert got.status_code == 200 and got["Content-Disposition"].startswith("attachment")
    data = b"".join(got.streaming_content)
    assert len(data) == status["size"]
    check_zip(data, alice)
    ranged = alice_api.get(download, HTTP_RANGE="bytes=0-3")
    assert ranged.status_code == 206 and b"".join(ranged.streaming_content) == data[:4]
    export = Export.objects.get()
    assert export.key.startswith(f"{alice.pk}/library/exports/")

    # A new export replaces the old one, blob included.
    with django_capture_on_commit_callbacks(execute=True):
        again = alice_api.post("/api/v1/export/").json()
    assert again["id"] != status["id"] and Export.objects.count() == 1
    assert not media_storage().exists(export.key)


def test_export_api_needs_write_scope_to_start(alice):
    from tests.conftest import api_client

    reader = api_client(alice, scopes=("media.read",))
    assert reader.post("/api/v1/export/").status_code == 403
    assert reader.get("/api/v1/export/").status_code == 200


def test_a_lost_original_is_listed_not_fatal(library, alice, tmp_path):
    first, _ = library
    media_storage().delete(first.original_key)
    with pytest.raises(CommandError, match="1 original"):  # a non-zero exit, the zip written all the same
        call_command("export", "alice", "--out", str(tmp_path / "a.zip"))
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        missing = json.loads(archive.read("missing.json"))["missing"]
        assert [m["id"] for m in missing] == [str(first.pk)]
        assert "2019/07/note.txt" not in archive.namelist()


def test_exports_are_deleted_after_their_keep_time(alice, settings, django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    from gallery.services.exports import export_build, export_request, exports_prune

    stored(alice, b"kept for a while", "kept.txt")
    with django_capture_on_commit_callbacks(execute=True):
        export = export_request(user=alice)
    export_build(export_id=export.pk)  # already built inline: safe to run twice
    export.refresh_from_db()
    assert export.state == "ready" and media_storage().exists(export.key)
    assert exports_prune() == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert exports_prune(now=timezone.now() + timedelta(hours=settings.EXPORT_KEEP_HOURS + 1)) == 1
    assert not Export.objects.exists() and not media_storage().exists(export.key)
