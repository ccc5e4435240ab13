"""Share links through the API: the owner's /api/v1/shares/ and the public /api/v1/shared/<token>/,
with the files behind /s/<token>/m/<media token>/<level>/.

alice shares, charlie is a stranger, anonymous clients hold links. A share shows its media
or its album's current media and nothing else of alice's; revoked and expired links are 404;
passwords are hashed, unlocked by a signed cookie and throttled; originals need
allow_download and leave without GPS unless show_metadata.
"""

from __future__ import annotations

import io
import json
import subprocess
from datetime import timedelta

import pytest
from django.contrib.auth.hashers import identify_hasher
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from PIL import Image
from rest_framework.test import APIClient

from gallery.models import Album, Media, Share
from gallery.services.library import album_items_add
from gallery.storage import media_storage
from tests.conftest import api_client

GPS_PHOTO = "jpg/gps/DSCN0025.jpg"


@pytest.fixture(autouse=True)
def _fresh_throttle():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def photo(alice, upload, corpus) -> Media:
    """alice's processed photo with a GPS position."""
    response = upload(api_client(alice), corpus / GPS_PHOTO)
    assert response.status_code == 201, response.content
    media = Media.objects.get(pk=response.json()["id"])
    assert media.status == Media.Status.READY and media.latitude is not None
    return media


@pytest.fixture
def other_photo(alice, upload, corpus) -> Media:
    response = upload(api_client(alice), corpus / "jpg" / "Canon_40D.jpg")
    return Media.objects.get(pk=response.json()["id"])


def create(client: APIClient, **body):
    return client.post("/api/v1/shares/", body, format="json")


def exif_gps(data: bytes) -> dict:
    """The GPS tags exiftool finds in these bytes (any group)."""
    out = subprocess.run(["exiftool", "-j", "-n", "-gps:all", "-xmp:all", "-"], input=data, capture_output=True,
                         check=True).stdout
    return {k: v for k, v in json.loads(out)[0].items() if "GPS" in k}


def test_create_returns_an_unguessable_token_and_stores_only_a_password_hash(alice_api, photo):
    response = create(alice_api, media=str(photo.pk), password="hunter2 ", allow_download=True)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["url"] == f"/s/{body['token']}/"
    assert len(body["token"]) >= 22  # 128 bits of URL-safe base64
    assert body["has_password"] is True and body["show_metadata"] is False and body["allow_download"] is True
    assert "hunter2" not in response.content.decode()
    share = Share.objects.get(pk=body["id"])
    assert identify_hasher(share.password_hash) and "hunter2" not in share.password_hash
    assert len({create(alice_api, media=str(photo.pk)).json()["token"] for _ in range(5)}) == 5


def test_other_users_media_albums_and_shares_are_404(alice_api, charlie_api, charlie, photo):
    assert create(charlie_api, media=str(photo.pk)).status_code == 404
    alices_album = Album.objects.create(owner=photo.owner, title="Trip")
    assert create(charlie_api, album=alices_album.pk).status_code == 404
    share_id = create(alice_api, media=str(photo.pk)).json()["id"]
    assert charlie_api.delete(f"/api/v1/shares/{share_id}/").status_code == 404
    assert charlie_api.get("/api/v1/shares/").json()["results"] == []
    assert Share.objects.get(pk=share_id).revoked_at is None
    # A trashed media is not the caller's to share either.
    Media.objects.filter(pk=photo.pk).update(trashed_at=timezone.now())
    assert create(alice_api, media=str(photo.pk)).status_code == 404


@pytest.mark.parametrize("body", [
    {}, {"media": "00000000-0000-0000-0000-000000000000", "album": 1}, {"media": "nope"}, {"album": "x"},
    {"album": 2**70}, {"media": None, "album": None}, {"media": "m", "allow_download": "maybe"},
])
def test_bad_bodies_are_400(alice_api, body):
    response = create(alice_api, **body)
    assert response.status_code == 400 and response.json()["error"] == "invalid"


def test_expiry_in_the_past_is_400_and_scopes_are_enforced(alice, alice_api, photo):
    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    assert create(alice_api, media=str(photo.pk), expires_at=past).status_code == 400
    reader = api_client(alice, scopes=["media.read"])
    response = create(reader, media=str(photo.pk))
    assert response.status_code == 403 and response.json()["error"] == "insufficient_scope"
    assert reader.get("/api/v1/shares/").status_code == 200
    assert create(APIClient(), media=str(photo.pk)).status_code == 401


def test_list_is_the_callers_newest_first_in_constant_queries(alice_api, photo):
    ids = [create(alice_api, media=str(photo.pk)).json()["id"] for _ in range(3)]
    page = alice_api.get("/api/v1/shares/?page_size=2").json()
    assert [s["id"] for s in page["results"]] == ids[::-1][:2]
    assert [s["id"] for s in alice_api.get(page["next"]).json()["results"]] == ids[:1]
    assert alice_api.get("/api/v1/shares/?cursor=garbage").status_code == 400
    with CaptureQueriesContext(connection) as few:
        alice_api.get("/api/v1/shares/")
    for _ in range(10):
        create(alice_api, media=str(photo.pk))
    with CaptureQueriesContext(connection) as many:
        alice_api.get("/api/v1/shares/")
    assert len(few) == len(many)


def test_public_json_shows_only_the_shared_media_without_metadata_or_owner(alice_api, photo, other_photo):
    token = create(alice_api, media=str(photo.pk)).json()["token"]
    anonymous = APIClient()
    response = anonymous.get(f"/api/v1/shared/{token}/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["share"]["kind"] == "media" and body["count"] == 1
    [item] = body["results"]
    assert item["id"] == str(photo.pk)
    assert item["latitude"] is None and item["longitude"] is None and item["place"] is None and item["camera"] == ""
    text = response.content.decode()
    for secret in ("alice", photo.sha256, str(photo.owner_id), str(photo.token) + "/0/", "/m/"):
        assert secret not in text.replace(f"/s/{token}/m/", ""), secret
    assert item["original_url"] is None  # allow_download is off
    # Every URL it lists works without a login, for this share only.
    for variant in item["variants"].values():
        assert Client().get(variant["url"]).status_code == 200, variant["url"]
    assert Client().get(f"/s/{token}/m/{photo.token}/0/").status_code == 404
    assert Client().get(f"/s/{token}/m/{other_photo.token}/3s/").status_code == 404
    assert Client().get(f"/m/{photo.token}/3s/").status_code == 404


def test_image_levels_carry_no_metadata(alice_api, photo):
    token = create(alice_api, media=str(photo.pk)).json()["token"]
    item = APIClient().get(f"/api/v1/shared/{token}/").json()["results"][0]
    assert {"6", "3s"} <= set(item["variants"])
    for level, variant in item["variants"].items():
        data = b"".join(Client().get(variant["url"]).streaming_content)
        assert data[:4] == b"RIFF" and data[8:12] == b"WEBP", level
        assert b"EXIF" not in data[:64] and b"XMP " not in data and exif_gps(data) == {}, level


def test_show_metadata_shows_the_place_and_the_original_as_stored(alice_api, photo):
    token = create(alice_api, media=str(photo.pk), show_metadata=True, allow_download=True).json()["token"]
    item = APIClient().get(f"/api/v1/shared/{token}/").json()["results"][0]
    assert item["latitude"] == pytest.approx(photo.latitude) and item["camera"]
    data = b"".join(Client().get(item["original_url"]).streaming_content)
    with media_storage().open(photo.original_key, "rb") as fh:
        assert data == fh.read()
    assert exif_gps(data)


def test_allow_download_sends_the_original_without_gps_ranges_included(alice_api, photo):
    token = create(alice_api, media=str(photo.pk), allow_download=True).json()["token"]
    item = APIClient().get(f"/api/v1/shared/{token}/").json()["results"][0]
    url = item["original_url"]
    assert url == f"/s/{token}/m/{photo.token}/0/"
    response = Client().get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    data = b"".join(response.streaming_content)
    with media_storage().open(photo.original_key, "rb") as fh:
        stored = fh.read()
    assert exif_gps(stored) and exif_gps(data) == {}
    assert len(data) == len(stored) == int(response["Content-Length"]) and data != stored
    Image.open(io.BytesIO(data)).load()  # still a picture
    # Not the stored file's ETag: a cache never mixes the two representations.
    owner = Client()
    owner.force_login(photo.owner)
    assert owner.get(f"/m/{photo.token}/0/")["ETag"] != response["ETag"]
    # A range inside the patched header gets the patched bytes too.
    ranged = Client().get(url, HTTP_RANGE="bytes=0-4095")
    assert ranged.status_code == 206 and b"".join(ranged.streaming_content) == data[:4096]
    assert Client().get(url + "?download=1")["Content-Disposition"].startswith("attachment")


def test_album_share_follows_the_album(alice, alice_api, photo, other_photo, upload, corpus):
    album = Album.objects.create(owner=alice, title="Brittany")
    album_items_add(album=album, media_ids=[photo.pk, other_photo.pk])
    outside = Media.objects.get(pk=upload(api_client(alice), corpus / "jpg" / "Nikon_D70.jpg").json()["id"])
    token = create(alice_api, album=album.pk).json()["token"]
    anonymous = APIClient()
    body = anonymous.get(f"/api/v1/shared/{token}/").json()
    assert body["share"] == {"kind": "album", "title": "Brittany", "expires_at": None, "allow_download": False,
                             "show_metadata": False}
    assert {i["id"] for i in body["results"]} == {str(photo.pk), str(other_photo.pk)}
    assert Client().get(f"/s/{token}/m/{outside.token}/3s/").status_code == 404
    # Removed from the album, trashed or moved to the vault: gone from the share at once.
    album.media.remove(other_photo)
    assert Client().get(f"/s/{token}/m/{other_photo.token}/3s/").status_code == 404
    assert [i["id"] for i in anonymous.get(f"/api/v1/shared/{token}/").json()["results"]] == [str(photo.pk)]
    for state in ({"trashed_at": timezone.now()}, {"in_vault": True}):
        Media.objects.filter(pk=photo.pk).update(**{"trashed_at": None, "in_vault": False, **state})
        assert anonymous.get(f"/api/v1/shared/{token}/").json()["results"] == [], state
        assert Client().get(f"/s/{token}/m/{photo.token}/3s/").status_code == 404, state


@pytest.mark.parametrize("how", ["revoked", "expired", "owner deactivated", "unknown"])
def test_dead_links_are_404_everywhere(alice, alice_api, photo, how):
    body = create(alice_api, media=str(photo.pk), allow_download=True).json()
    token = body["token"]
    assert APIClient().get(f"/api/v1/shared/{token}/").status_code == 200
    if how == "revoked":
        assert alice_api.delete(f"/api/v1/shares/{body['id']}/").status_code == 204
        assert alice_api.get("/api/v1/shares/").json()["results"][0]["revoked_at"] is not None
    elif how == "expired":
        Share.objects.filter(pk=body["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif how == "owner deactivated":
        type(alice).objects.filter(pk=alice.pk).update(is_active=False)
    else:
        token = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    response = APIClient().get(f"/api/v1/shared/{token}/")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    for level in ("0", "3s"):
        assert Client().get(f"/s/{token}/m/{photo.token}/{level}/").status_code == 404
    assert APIClient().post(f"/api/v1/shared/{token}/unlock", {"password": "x"}, format="json").status_code == 404


def test_password_unlock_cookie_opens_that_share_only(alice_api, photo):
    token = create(alice_api, media=str(photo.pk), password="open sesame").json()["token"]
    other = create(alice_api, media=str(photo.pk), password="open sesame").json()["token"]
    browser = APIClient()
    locked = browser.get(f"/api/v1/shared/{token}/")
    assert locked.status_code == 403 and locked.json()["error"] == "password_required"
    assert browser.get(f"/s/{token}/m/{photo.token}/3s/").status_code == 404
    wrong = browser.post(f"/api/v1/shared/{token}/unlock", {"password": "open"}, format="json")
    assert wrong.status_code == 403 and wrong.json()["error"] == "wrong_password"
    assert browser.post(f"/api/v1/shared/{token}/unlock", {}, format="json").status_code == 400
    right = browser.post(f"/api/v1/shared/{token}/unlock", {"password": "open sesame"}, format="json")
    assert right.status_code == 204
    [cookie] = right.cookies.values()
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert browser.get(f"/api/v1/shared/{token}/").status_code == 200
    assert browser.get(f"/s/{token}/m/{photo.token}/3s/").status_code == 200
    assert browser.get(f"/api/v1/shared/{other}/").status_code == 403  # one cookie per share
    # A forged or copied cookie value does not open another share.
    forged = APIClient()
    forged.cookies[f"chipmunk_share_{Share.objects.get(token=other).pk}"] = cookie.value
    assert forged.get(f"/api/v1/shared/{other}/").status_code == 403


def test_wrong_passwords_are_throttled_then_even_the_right_one_waits(settings, alice_api, photo):
    settings.THROTTLE_RULES = {**settings.THROTTLE_RULES, "share-password": (3, 60)}
    token = create(alice_api, media=str(photo.pk), password="right").json()["token"]
    client = APIClient()
    for _ in range(3):
        assert client.post(f"/api/v1/shared/{token}/unlock", {"password": "wrong"}, format="json").status_code == 403
    response = client.post(f"/api/v1/shared/{token}/unlock", {"password": "right"}, format="json")
    assert response.status_code == 429 and response.json()["error"] == "throttled"
    assert 1 <= int(response["Retry-After"]) <= 60
    # Per address too: another share from the same address is limited by its own rule.
    settings.THROTTLE_RULES = {**settings.THROTTLE_RULES, "share-address": (4, 60)}
    second = create(alice_api, media=str(photo.pk), password="right").json()["token"]
    assert client.post(f"/api/v1/shared/{second}/unlock", {"password": "w"}, format="json").status_code == 403
    assert client.post(f"/api/v1/shared/{second}/unlock", {"password": "right"}, format="json").status_code == 429


def test_public_json_has_a_constant_number_of_queries(alice, alice_api, photo, other_photo):
    album = Album.objects.create(owner=alice, title="A")
    album_items_add(album=album, media_ids=[photo.pk])
    token = create(alice_api, album=album.pk).json()["token"]
    with CaptureQueriesContext(connection) as one:
        assert APIClient().get(f"/api/v1/shared/{token}/").status_code == 200
    album_items_add(album=album, media_ids=[other_photo.pk])
    with CaptureQueriesContext(connection) as two:
        assert len(APIClient().get(f"/api/v1/shared/{token}/").json()["results"]) == 2
    assert len(one) == len(two)


def test_fuzzed_bodies_are_never_a_server_error(alice_api, photo):
    from hypothesis import given
    from hypothesis import strategies as st

    from tests.test_fuzz import assert_not_5xx, fuzzing, junk

    token = create(alice_api, media=str(photo.pk), password="pw").json()["token"]
    values = st.one_of(junk, st.none(), st.booleans(), st.integers(-2**70, 2**70), st.just(str(photo.pk)),
                       st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()), st.lists(junk, max_size=2))
    keys = st.sampled_from(["media", "album", "password", "expires_at", "allow_download", "show_metadata", "x"])

    @fuzzing(150)
    @given(body=st.dictionaries(keys, values, max_size=5), target=st.sampled_from(["create", "unlock"]))
    def fuzz(body, target):
        cache.clear()  # the unlock throttle would end the fuzzing early
        url = "/api/v1/shares/" if target == "create" else f"/api/v1/shared/{token}/unlock"
        client = alice_api if target == "create" else APIClient()
        assert_not_5xx(client.post(url, body, format="json"))

    fuzz()
