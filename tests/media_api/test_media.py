from __future__ import annotations

import hashlib

import pytest
from rest_framework.test import APIClient

from gallery.models import Media, User
from tests.conftest import api_client

pytestmark = pytest.mark.django_db


def test_upload_stores_original_and_returns_media_json(storage, alice, alice_api, upload, corpus):
    path = corpus / "jpg" / "gps" / "DSCN0010.jpg"
    response = upload(alice_api, path)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert body["size"] == path.stat().st_size
    assert body["name"] == "DSCN0010.jpg"
    assert body["kind"] == "image"
    assert body["content_type"] == "image/jpeg"
    for key in ("id", "status", "error", "taken_at", "width", "height", "duration", "latitude", "longitude",
                "place", "camera", "variants", "original_url"):
        assert key in body
    media = Media.objects.get(pk=body["id"])
    from gallery.storage import media_storage

    with media_storage().open(media.original_key) as fh:
        assert fh.read() == path.read_bytes()
    assert media.original_key.startswith(f"{alice.pk}/library/")
    alice.refresh_from_db()
    assert alice.used_bytes == path.stat().st_size


def test_same_file_twice_resolves_to_the_existing_media(alice, alice_api, upload):
    first = upload(alice_api, name="a.bin", data=b"same bytes")
    second = upload(alice_api, name="b.bin", data=b"same bytes")
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    alice.refresh_from_db()
    assert alice.used_bytes == len(b"same bytes")
    assert Media.objects.filter(owner=alice).count() == 1


def test_quota_edge_exactly_full_is_accepted_one_byte_more_is_413(storage, db, upload):
    from gallery.services.accounts import user_create

    dora = user_create(username="dora", password="dora-password", quota_bytes=1000)
    client = api_client(dora)
    ok = upload(client, name="fits.bin", data=b"x" * 600)
    assert ok.status_code == 201
    refused = upload(client, name="too-big.bin", data=b"y" * 401)
    assert refused.status_code == 413
    body = refused.json()
    assert body["error"] == "quota_exceeded"
    assert body["quota"] == 1000 and body["used"] == 600 and body["requested"] == 401
    exact = upload(client, name="exact.bin", data=b"z" * 400)
    assert exact.status_code == 201
    dora.refresh_from_db()
    assert dora.used_bytes == 1000
    assert Media.objects.filter(owner=dora).count() == 2


def test_over_quota_stores_nothing(storage, db, upload, settings):
    from gallery.services.accounts import user_create
    from gallery.storage import media_storage

    erin = user_create(username="erin", password="erin-password", quota_bytes=10)
    response = upload(api_client(erin), name="big.bin", data=b"q" * 11)
    assert response.status_code == 413
    assert not Media.objects.filter(owner=erin).exists()
    if storage == "local":
        assert not media_storage().exists(f"{erin.pk}")
    else:
        store = media_storage()
        listed = store.connection.meta.client.list_objects_v2(Bucket=store.bucket_name, Prefix=f"{erin.pk}/")
        assert listed.get("KeyCount", 0) == 0


def test_list_is_newest_first_with_cursor_pagination_and_filters(alice, alice_api, upload):
    ids = [upload(alice_api, name=f"f{i}.txt", data=f"file {i}".encode()).json()["id"] for i in range(5)]
    upload(alice_api, name="song.mp3", data=b"ID3\x04\x00\x00\x00\x00\x00\x00 an MP3 tag, no frames")  # the kind comes from the bytes
    page = alice_api.get("/api/v1/media/?page_size=2&kind=document").json()
    assert page["count"] == 5
    assert [m["id"] for m in page["results"]] == ids[::-1][:2]
    seen = [m["id"] for m in page["results"]]
    while page["next"]:
        page = alice_api.get(page["next"]).json()
        seen += [m["id"] for m in page["results"]]
    assert seen == ids[::-1]
    sha = hashlib.sha256(b"file 3").hexdigest()
    found = alice_api.get(f"/api/v1/media/?sha256={sha}").json()
    assert found["count"] == 1 and found["results"][0]["id"] == ids[3]
    assert alice_api.get("/api/v1/media/?kind=audio").json()["count"] == 1
    bad = alice_api.get("/api/v1/media/?kind=spaceship")
    assert bad.status_code == 400 and bad.json()["error"] == "invalid"


def test_list_has_constant_query_count(alice, alice_api, upload, corpus):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    upload(alice_api, corpus / "jpg" / "Canon_40D.jpg")
    with CaptureQueriesContext(connection) as few:
        assert len(alice_api.get("/api/v1/media/").json()["results"]) == 1
    for i in range(4):
        upload(alice_api, name=f"n{i}.txt", data=f"n{i}".encode())
    upload(alice_api, corpus / "jpg" / "Nikon_D70.jpg")
    with CaptureQueriesContext(connection) as many:
        assert len(alice_api.get("/api/v1/media/").json()["results"]) == 6
    assert len(many) == len(few) <= 8


def test_missing_file_field_is_400_json(alice_api):
    response = alice_api.post("/api/v1/media/", {}, format="multipart")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"
    assert "file" in response.json()["fields"]


def test_delete_moves_to_trash_and_emptying_it_frees_quota_and_bytes(storage, alice, alice_api, upload,
                                                                      django_capture_on_commit_callbacks):
    from gallery.storage import media_storage

    body = upload(alice_api, name="gone.txt", data=b"bye" * 100).json()
    key = Media.objects.get(pk=body["id"]).original_key
    assert media_storage().exists(key)
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_api.delete(f"/api/v1/media/{body['id']}/")
    assert response.status_code == 204
    assert alice_api.get(f"/api/v1/media/{body['id']}/").status_code == 404
    alice.refresh_from_db()
    assert alice.used_bytes == 300 and media_storage().exists(key)  # trashed bytes still count
    with django_capture_on_commit_callbacks(execute=True):
        assert alice_api.post("/api/v1/trash/empty").json() == {"purged": 1}
    alice.refresh_from_db()
    assert alice.used_bytes == 0
    assert not media_storage().exists(key)
    assert not Media.objects.filter(pk=body["id"]).exists()


def test_anonymous_is_401(db):
    client = APIClient()
    for method, url in (("get", "/api/v1/media/"), ("post", "/api/v1/media/"), ("get", "/api/v1/usage/")):
        response = getattr(client, method)(url)
        assert response.status_code == 401
        assert response.json()["error"] == "not_authenticated"
    bad_key = APIClient()
    bad_key.credentials(HTTP_AUTHORIZATION="Bearer chip_deadbeef_nope")
    assert bad_key.get("/api/v1/media/").status_code == 401


def test_read_scope_allows_gets_only(alice, upload):
    reader = api_client(alice, scopes=("media.read",))
    writer = api_client(alice, scopes=("media.read_write",))
    assert reader.get("/api/v1/media/").status_code == 200
    refused = upload(reader, name="r.txt", data=b"r")
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"
    assert 'scope="media.read_write"' in refused["WWW-Authenticate"]
    created = upload(writer, name="w.txt", data=b"w")
    assert created.status_code == 201
    assert reader.delete(f"/api/v1/media/{created.json()['id']}/").status_code == 403
    assert writer.get(f"/api/v1/media/{created.json()['id']}/").status_code == 200


def test_revoked_key_stops_working(alice):
    from gallery.models import ApiKey
    from gallery.services.accounts import apikey_create, apikey_revoke

    key, raw = apikey_create(user=alice, name="phone", scopes=["media.read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/media/").status_code == 200
    assert ApiKey.objects.get(pk=key.pk).hashed_secret != raw and raw not in str(ApiKey.objects.values().get(pk=key.pk))
    apikey_revoke(key=key)
    assert client.get("/api/v1/media/").status_code == 401


def test_charlie_gets_404_on_every_alice_object(alice, alice_api, charlie_api, upload, client, charlie):
    media = upload(alice_api, name="private.txt", data=b"alice only").json()
    mid = media["id"]
    assert charlie_api.get(f"/api/v1/media/{mid}/").status_code == 404
    assert charlie_api.delete(f"/api/v1/media/{mid}/").status_code == 404
    assert charlie_api.get("/api/v1/media/").json()["count"] == 0
    sha = hashlib.sha256(b"alice only").hexdigest()
    assert charlie_api.get(f"/api/v1/media/?sha256={sha}").json()["count"] == 0
    # The bytes: also 404 with the right URL, for a session and for an API key.
    client.force_login(charlie)
    assert client.get(media["original_url"]).status_code == 404
    assert charlie_api.get(media["original_url"]).status_code == 404
    assert Media.objects.filter(pk=mid).exists()


def test_usage_reports_by_kind(alice, alice_api, upload):
    upload(alice_api, name="a.txt", data=b"12345")
    upload(alice_api, name="b.mp3", data=b"ID3\x04567")  # audio by its bytes, not its name
    usage = alice_api.get("/api/v1/usage/").json()
    assert usage["used"] == 12 and usage["quota"] == alice.quota_bytes and usage["reserved"] == 0
    assert usage["by_kind"]["document"] == {"count": 1, "bytes": 5}
    assert usage["by_kind"]["audio"] == {"count": 1, "bytes": 7}
    assert usage["by_kind"]["video"] == {"count": 0, "bytes": 0}


def test_taken_at_is_local_time_with_offset(alice, alice_api, upload):
    body = upload(alice_api, name="note.txt", data=b"when").json()
    # No EXIF: the upload time, shown in alice's zone (Europe/Paris: +01:00 or +02:00).
    assert body["taken_at"].endswith(("+01:00", "+02:00"))
    assert User.objects.get(pk=alice.pk).time_zone == "Europe/Paris"


def test_rotating_the_token_kills_leaked_urls(alice, alice_api, charlie_api, upload, corpus):
    created = upload(alice_api, corpus / "jpg" / "Canon_40D.jpg").json()
    body = alice_api.get(f"/api/v1/media/{created['id']}/").json()  # processed: with variants
    old_original, old_thumb = body["original_url"], body["variants"]["3"]["url"]
    assert alice_api.get(old_original).status_code == 200
    assert charlie_api.post(f"/api/v1/media/{body['id']}/rotate-token/").status_code == 404
    rotated = alice_api.post(f"/api/v1/media/{body['id']}/rotate-token/")
    assert rotated.status_code == 200
    new = rotated.json()
    assert new["original_url"] != old_original and new["variants"]["3"]["url"] != old_thumb
    assert alice_api.get(old_original).status_code == 404
    assert alice_api.get(old_thumb).status_code == 404
    assert alice_api.get(new["original_url"]).status_code == 200
    assert alice_api.get(new["variants"]["3"]["url"]).status_code == 200
    reader = api_client(alice, scopes=("media.read",))
    assert reader.post(f"/api/v1/media/{body['id']}/rotate-token/").status_code == 403
