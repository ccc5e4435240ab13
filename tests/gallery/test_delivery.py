"""/m/<token>/<level>/ through the Django test clients: who may read, what is sent, how.

S3 cases run against the moto server of tests/conftest.py; the S3 calls are observed with
a spy on botocore's client (it records and passes through, it answers nothing).
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid

import botocore.client
import pytest
import requests
from django.core.files.base import ContentFile
from django.test import AsyncClient, Client
from django.utils import timezone

from gallery.delivery import sources
from gallery.delivery.blobcache import BLOCK_SIZE, cache_stats, get_cache
from gallery.models import Media, Variant
from gallery.services.accounts import apikey_create, apikey_revoke
from gallery.storage import media_storage, original_key, variant_key
from tests.gallery.test_blobcache import usage_by_owner


@pytest.fixture(autouse=True)
def _delivery_settings(settings, tmp_path):
    settings.DELIVERY_MODE = "stream"
    settings.BLOB_CACHE_DIR = tmp_path / "cache"
    settings.BLOB_CACHE_BYTES = 64 * 2**20
    settings.BLOB_CACHE_USER_SHARE = 0.5


def make_media(owner, data: bytes, *, filename: str = "photo.jpg", content_type: str = "image/jpeg",
               **fields) -> Media:
    media_id = uuid.uuid4()
    key = media_storage().save(original_key(user_id=owner.id, media_id=media_id, filename=filename),
                               ContentFile(data))
    return Media.objects.create(
        id=media_id, owner=owner, original_filename=filename, content_type=content_type, size=len(data),
        sha256=hashlib.sha256(data).hexdigest(), status=Media.Status.READY, original_key=key, **fields)


def make_variant(media: Media, level: str, data: bytes) -> Variant:
    key = media_storage().save(variant_key(user_id=media.owner_id, media_id=media.id, level=level, ext="webp"),
                               ContentFile(data))
    return Variant.objects.create(media=media, level=level, width=10, height=10, size=len(data),
                                  content_type="image/webp", storage_key=key)


def url(media: Media, level: str = "0") -> str:
    return f"/m/{media.token}/{level}/"


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.fixture
def data() -> bytes:
    return os.urandom(600 * 1024 + 17)


@pytest.fixture
def photo(alice, data, storage) -> Media:
    return make_media(alice, data)


@pytest.fixture
def alice_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


# --- Who may read ------------------------------------------------------------------------
def test_owner_gets_the_whole_original(alice_client, photo, data):
    response = alice_client.get(url(photo))
    assert response.status_code == 200
    assert body(response) == data
    assert response["Content-Length"] == str(len(data))
    assert response["Content-Type"] == "image/jpeg"
    assert response["Accept-Ranges"] == "bytes"
    assert response["ETag"] == f'"{photo.sha256[:32]}"'
    assert response["Last-Modified"]
    assert response["Cache-Control"] == "private, no-cache"
    assert response["Content-Disposition"] == 'inline; filename="photo.jpg"'
    assert response["X-Content-Type-Options"] == "nosniff"


def test_strangers_and_anonymous_get_404(client, photo, bob, charlie):
    assert client.get(url(photo)).status_code == 404
    for user in (bob, charlie):
        other = Client()
        other.force_login(user)
        assert other.get(url(photo)).status_code == 404
        _, raw = apikey_create(user=user, name="k", scopes=["media.read"])
        assert Client().get(url(photo), HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 404


def test_api_key_of_the_owner_works_until_revoked(photo, alice, data):
    key, raw = apikey_create(user=alice, name="k", scopes=["media.read"])
    response = Client().get(url(photo), HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200 and body(response) == data
    assert Client().get(url(photo), HTTP_AUTHORIZATION=f"Bearer {raw}x").status_code == 404
    apikey_revoke(key=key)
    assert Client().get(url(photo), HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 404


def test_a_session_ends_with_a_password_change_or_a_deactivated_owner(alice_client, alice, photo, data):
    assert alice_client.get(url(photo)).status_code == 200
    alice.set_password("a-new-password")
    alice.save(update_fields=["password"])
    assert alice_client.get(url(photo)).status_code == 404  # the session hash no longer matches
    again = Client()
    again.force_login(alice)
    assert again.get(url(photo)).status_code == 200
    type(alice).objects.filter(pk=alice.pk).update(is_active=False)
    assert again.get(url(photo)).status_code == 404


def test_a_session_signed_with_a_fallback_secret_still_works(settings, alice, photo, data):
    settings.SECRET_KEY = "old-secret-" * 5
    client = Client()
    client.force_login(alice)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "new-secret-" * 5, ["old-secret-" * 5]
    response = client.get(url(photo))
    assert response.status_code == 200 and body(response) == data
    settings.SECRET_KEY_FALLBACKS = []
    assert client.get(url(photo)).status_code == 200  # Django re-keyed the session with the new secret


def test_api_key_of_a_deactivated_owner_is_refused(alice, photo):
    _, raw = apikey_create(user=alice, name="k", scopes=["media.read"])
    type(alice).objects.filter(pk=alice.pk).update(is_active=False)
    assert Client().get(url(photo), HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 404


def test_queries_per_request(alice_client, alice, photo, django_assert_num_queries):
    make_variant(photo, "2", b"thumb")
    _, raw = apikey_create(user=alice, name="k", scopes=["media.read"])
    Client().get(url(photo), HTTP_AUTHORIZATION=f"Bearer {raw}")  # records the key's first use
    # The API's authentication classes: the session and its user, or the API key with its
    # user; then the media or variant the one visibility rule lets through.
    for level in ("0", "2"):
        with django_assert_num_queries(3):
            assert alice_client.get(url(photo, level)).status_code == 200
        with django_assert_num_queries(2):
            assert Client().get(url(photo, level), HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200


@pytest.mark.parametrize("change", [{"trashed_at": timezone.now()}, {"in_vault": True}])
def test_trashed_and_vault_media_are_404_even_for_the_owner(alice_client, photo, change):
    Media.objects.filter(pk=photo.pk).update(**change)
    assert alice_client.get(url(photo)).status_code == 404
    assert alice_client.get(url(photo), HTTP_RANGE="bytes=0-1").status_code == 404


def test_unknown_token_level_and_method(alice_client, photo):
    assert alice_client.get(f"/m/{'x' * 22}/0/").status_code == 404
    assert alice_client.get(url(photo, "9")).status_code == 404
    assert alice_client.post(url(photo)).status_code == 405


def test_original_still_uploading_is_404(alice_client, photo):
    Media.objects.filter(pk=photo.pk).update(status=Media.Status.UPLOADING)
    assert alice_client.get(url(photo)).status_code == 404


# --- What is sent ------------------------------------------------------------------------
def test_single_range(alice_client, photo, data):
    response = alice_client.get(url(photo), HTTP_RANGE="bytes=1000-300000")
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 1000-300000/{len(data)}"
    assert response["Content-Length"] == "299001"
    assert body(response) == data[1000:300001]
    suffix = alice_client.get(url(photo), HTTP_RANGE="bytes=-100")
    assert body(suffix) == data[-100:]


def test_multiple_ranges_are_multipart(alice_client, photo, data):
    response = alice_client.get(url(photo), HTTP_RANGE="bytes=0-9,500000-,-5")
    assert response.status_code == 206
    boundary = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", response["Content-Type"]).group(1)
    content = body(response)
    assert len(content) == int(response["Content-Length"])
    chunks = content.split(f"--{boundary}".encode())
    assert chunks[0] == b"\r\n" and chunks[-1] == b"--\r\n"
    parts = []
    for chunk in chunks[1:-1]:
        head, _, payload = chunk.partition(b"\r\n\r\n")
        assert payload.endswith(b"\r\n")
        parts.append((re.search(rb"Content-Range: bytes (\d+)-(\d+)/(\d+)", head).groups(), payload[:-2]))
    size = len(data)
    assert parts == [
        ((b"0", b"9", str(size).encode()), data[:10]),
        ((b"500000", str(size - 1).encode(), str(size).encode()), data[500000:]),
        ((str(size - 5).encode(), str(size - 1).encode(), str(size).encode()), data[-5:]),
    ]


def test_unsatisfiable_and_malformed_ranges(alice_client, photo, data):
    response = alice_client.get(url(photo), HTTP_RANGE=f"bytes={len(data)}-")
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(data)}"
    assert response["Cache-Control"] == "no-store"
    assert body(response) == b""
    malformed = alice_client.get(url(photo), HTTP_RANGE="bytes=oops")
    assert malformed.status_code == 200 and body(malformed) == data


def test_conditional_requests(alice_client, photo):
    first = alice_client.get(url(photo))
    etag, last_modified = first["ETag"], first["Last-Modified"]
    not_modified = alice_client.get(url(photo), HTTP_IF_NONE_MATCH=etag)
    assert not_modified.status_code == 304
    assert not not_modified.has_header("Content-Length")
    assert not_modified["ETag"] == etag
    assert not_modified["Cache-Control"] == "private, no-cache"
    assert body(not_modified) == b""
    assert alice_client.get(url(photo), HTTP_IF_MODIFIED_SINCE=last_modified).status_code == 304
    assert alice_client.get(url(photo), HTTP_IF_NONE_MATCH='"other"').status_code == 200
    assert alice_client.get(url(photo), HTTP_IF_MATCH='"other"').status_code == 412
    stale = alice_client.get(url(photo), HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE='"other"')
    assert stale.status_code == 200
    fresh = alice_client.get(url(photo), HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE=etag)
    assert fresh.status_code == 206


def test_head_sends_headers_only(alice_client, photo, data):
    response = alice_client.head(url(photo))
    assert response.status_code == 200
    assert response["Content-Length"] == str(len(data))
    assert body(response) == b""
    ranged = alice_client.head(url(photo), HTTP_RANGE="bytes=0-99")
    assert ranged.status_code == 206 and ranged["Content-Length"] == "100"


def test_variant_is_immutable_and_has_no_disposition(alice_client, photo):
    thumb = os.urandom(5000)
    make_variant(photo, "2", thumb)
    response = alice_client.get(url(photo, "2"))
    assert response.status_code == 200
    assert body(response) == thumb
    assert response["Content-Type"] == "image/webp"
    assert response["Cache-Control"] == "private, max-age=31536000, immutable"
    assert not response.has_header("Content-Disposition")
    assert re.fullmatch(r'"[0-9a-f]{32}"', response["ETag"])
    assert alice_client.get(url(photo, "2"), HTTP_IF_NONE_MATCH=response["ETag"]).status_code == 304


def test_download_names_the_file_per_rfc_6266(alice_client, alice, storage):
    media = make_media(alice, b"hello", filename='Été "à" Zürich.jpg')
    response = alice_client.get(url(media) + "?download=1")
    assert response["Content-Disposition"] == (
        "attachment; filename=\"Ete _a_ Zurich.jpg\"; "
        "filename*=UTF-8''%C3%89t%C3%A9%20%22%C3%A0%22%20Z%C3%BCrich.jpg")
    assert body(response) == b"hello"


@pytest.mark.parametrize(("content_type", "disposition"), [
    ("image/svg+xml", "attachment"), ("text/html", "attachment"), ("video/mp4", "inline"),
    ("application/pdf", "inline"),
])
def test_only_harmless_types_are_inline(alice_client, alice, content_type, disposition):
    media = make_media(alice, b"<svg/>", filename="x.bin", content_type=content_type)
    response = alice_client.get(url(media))
    assert response["Content-Disposition"].split(";")[0] == disposition
    assert response["X-Content-Type-Options"] == "nosniff"


# --- How it is sent ----------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
async def test_asgi_streams_in_bounded_chunks(alice, data, storage, monkeypatch):
    from asgiref.sync import sync_to_async

    monkeypatch.setattr(sources, "CHUNK_SIZE", 256 * 1024)

    media = await sync_to_async(make_media)(alice, data)
    _, raw = await sync_to_async(apikey_create)(user=alice, name="k", scopes=["media.read"])
    client, auth = AsyncClient(), {"Authorization": f"Bearer {raw}"}
    response = await client.get(url(media), headers=auth)
    assert response.status_code == 200
    assert response.is_async
    chunks = [chunk async for chunk in response.streaming_content]
    assert b"".join(chunks) == data
    assert max(len(c) for c in chunks) <= sources.CHUNK_SIZE and len(chunks) >= 3
    ranged = await client.get(url(media), headers={**auth, "Range": "bytes=10-19"})
    assert ranged.status_code == 206
    assert b"".join([c async for c in ranged.streaming_content]) == data[10:20]


@pytest.mark.django_db(transaction=True)
def test_x_accel_mode_hands_over_to_nginx(settings, live_asgi, alice_client, alice):
    # Through the production ASGI app, as nginx would reach it (the nginx leg is in
    # test_nginx_conformance.py).
    settings.DELIVERY_MODE = "x-accel"  # local storage only, as settings require
    photo = make_media(alice, b"jpeg bytes")
    session = {settings.SESSION_COOKIE_NAME: alice_client.cookies[settings.SESSION_COOKIE_NAME].value}
    response = requests.get(live_asgi.url(url(photo) + "?download=1"), cookies=session, timeout=10)
    assert response.status_code == 200
    assert response.headers["X-Accel-Redirect"] == f"/_protected/{photo.original_key}"
    assert response.headers["Content-Type"] == "image/jpeg"
    assert response.headers["Content-Disposition"] == 'attachment; filename="photo.jpg"'
    assert response.content == b""
    Media.objects.filter(pk=photo.pk).update(in_vault=True)
    assert requests.get(live_asgi.url(url(photo)), cookies=session, timeout=10).status_code == 404
    assert requests.get(live_asgi.url(url(photo)), timeout=10).status_code == 404


def test_redirect_mode_presigns_on_s3_and_streams_locally(settings, alice_client, alice, data, storage):
    settings.DELIVERY_MODE = "redirect"
    media = make_media(alice, data, filename="ünïcode.jpg")
    response = alice_client.get(url(media) + "?download=1")
    if storage == "local":
        assert response.status_code == 200 and body(response) == data
        return
    assert response.status_code == 302
    assert response["Cache-Control"] == "private, no-store"
    presigned = requests.get(response["Location"], timeout=10)
    assert presigned.status_code == 200 and presigned.content == data
    assert presigned.headers["Content-Disposition"].startswith('attachment; filename="unicode.jpg"')
    assert "X-Amz-Expires=300" in response["Location"]


# --- S3: ranged GETs and the block cache ---------------------------------------------------
@pytest.fixture
def s3_calls(monkeypatch):
    """Every S3 GetObject made, as its Range parameter (a spy: the real call still happens)."""
    calls: list[str | None] = []
    original = botocore.client.BaseClient._make_api_call

    def spy(self, operation_name, api_params):
        if operation_name == "GetObject":
            calls.append(api_params.get("Range"))
        return original(self, operation_name, api_params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", spy)
    return calls


@pytest.fixture
def s3_video(alice, moto_server, settings, tmp_path):
    from tests.conftest import use_storage

    use_storage(settings, moto_server.storage_config(moto_server.new_bucket()))
    data = os.urandom(2 * BLOCK_SIZE + 12345)
    return make_media(alice, data, filename="clip.mp4", content_type="video/mp4"), data


def test_s3_without_cache_gets_exactly_the_bytes_asked(settings, alice_client, s3_video, s3_calls):
    settings.BLOB_CACHE_BYTES = 0
    media, data = s3_video
    response = alice_client.get(url(media), HTTP_RANGE="bytes=5000000-5000099")
    assert body(response) == data[5000000:5000100]
    multi = alice_client.get(url(media), HTTP_RANGE="bytes=0-9,-10")
    assert multi.status_code == 206 and data[-10:] in body(multi)
    assert s3_calls == ["bytes=5000000-5000099", "bytes=0-9", f"bytes={len(data) - 10}-{len(data) - 1}"]
    assert cache_stats() == {"enabled": False}


def test_s3_cache_fetches_blocks_once_then_serves_from_disk(settings, alice_client, s3_video, s3_calls):
    media, data = s3_video
    first, last = BLOCK_SIZE - 10, BLOCK_SIZE + 9  # straddles blocks 0 and 1
    cold = alice_client.get(url(media), HTTP_RANGE=f"bytes={first}-{last}")
    assert body(cold) == data[first:last + 1]
    # Only the two blocks touched, in one aligned ranged GET; never the whole object.
    assert s3_calls == [f"bytes=0-{2 * BLOCK_SIZE - 1}"]
    stats = cache_stats()
    assert (stats["misses"], stats["hits"], stats["entries"], stats["bytes"]) == (2, 0, 2, 2 * BLOCK_SIZE)

    s3_calls.clear()
    warm = alice_client.get(url(media), HTTP_RANGE=f"bytes={first}-{last}")
    assert body(warm) == data[first:last + 1]
    assert s3_calls == []
    assert cache_stats()["hits"] == 2

    whole = alice_client.get(url(media))
    assert body(whole) == data
    assert s3_calls == [f"bytes={2 * BLOCK_SIZE}-{len(data) - 1}"]  # only the last, short block


def test_s3_blocks_bigger_than_a_share_bypass_the_cache(settings, alice_client, s3_video, s3_calls):
    settings.BLOB_CACHE_BYTES = BLOCK_SIZE  # a share of half a block: nothing fits
    media, data = s3_video
    response = alice_client.get(url(media), HTTP_RANGE="bytes=10-19")
    assert body(response) == data[10:20]
    assert s3_calls == ["bytes=10-19"]
    assert cache_stats()["bypassed"] == 1 and cache_stats()["entries"] == 0
    assert usage_by_owner(get_cache()) == {}


def test_s3_cold_whole_read_through_the_cache_is_one_get(settings, alice_client, s3_video, s3_calls):
    media, data = s3_video
    assert body(alice_client.get(url(media))) == data
    assert s3_calls == [f"bytes=0-{len(data) - 1}"]  # three blocks, one GET
    assert cache_stats()["misses"] == 3
    s3_calls.clear()
    assert body(alice_client.get(url(media), HTTP_RANGE="bytes=100-")) == data[100:]
    assert s3_calls == []


def test_s3_requests_in_new_threads_build_no_boto3_connection(s3_video, monkeypatch):
    # Under ASGI every request has a thread of its own; a boto3 session and resource per
    # request cost tens of milliseconds (django-storages keeps them per thread).
    import threading

    import boto3.session

    from gallery.storage import is_s3, s3_client

    storage = media_storage()
    first = s3_client(storage)
    built, seen = [], []
    monkeypatch.setattr(boto3.session.Session, "resource", lambda *a, **k: built.append(a))

    def request_thread():
        seen.append((is_s3(storage), s3_client(storage)))

    thread = threading.Thread(target=request_thread)
    thread.start()
    thread.join(10)
    assert seen == [(True, first)] and built == []
