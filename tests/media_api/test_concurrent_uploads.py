"""Uploads racing each other over real HTTP (a live server, one thread per request) on
PostgreSQL, with S3 through a moto server: every way in (multipart, tus, direct) and a mix.

Same bytes from many clients at once make exactly one media; racing uploads at the quota
edge never pass it; either way used_bytes is exact and every reservation is given back.
SQLite serialises every writer, so these races only mean something on PostgreSQL (CI).
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.conf import settings as django_settings

from gallery.models import Job, Media, Upload, User
from gallery.services.accounts import user_create
from gallery.storage import media_storage
from tests.conftest import use_storage
from tests.media_api.conftest import key_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(django_settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
                       reason="needs PostgreSQL (set DATABASE_URL): SQLite serialises every writer, so nothing races"),
]

THREADS = 8
SIZE = 100_000
WAYS = ("multipart", "tus", "direct")
TIMEOUT = 30


@pytest.fixture
def s3(settings, moto_server):
    use_storage(settings, moto_server.storage_config(moto_server.new_bucket()))


# --- The three ways in, as a client does them ---------------------------------------------
# Each returns (HTTP status of the step that makes the media, media id or None, error code or None).
def _auth(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def _outcome(response: requests.Response, media_id: str | None) -> tuple[int, str | None, str | None]:
    error = None
    if response.status_code >= 400:
        error = response.json().get("error")
    return response.status_code, media_id, error


def send_multipart(base: str, key: str, data: bytes, name: str):
    response = requests.post(f"{base}/api/v1/media/", files={"file": (name, data)}, headers=_auth(key),
                             timeout=TIMEOUT)
    return _outcome(response, response.json().get("id") if response.status_code in (200, 201) else None)


def send_tus(base: str, key: str, data: bytes, name: str):
    tus = {"Tus-Resumable": "1.0.0"}
    created = requests.post(f"{base}/api/v1/uploads/", timeout=TIMEOUT, headers=_auth(
        key, **tus, **{"Upload-Length": str(len(data)),
                       "Upload-Metadata": f"filename {base64.b64encode(name.encode()).decode()}"}))
    if created.status_code != 201:
        return _outcome(created, None)
    url = created.headers["Location"]
    if url.startswith("/"):
        url = base + url
    half = len(data) // 2
    for offset, chunk in ((0, data[:half]), (half, data[half:])):
        response = requests.patch(url, data=chunk, timeout=TIMEOUT, headers=_auth(
            key, **tus, **{"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}))
        if response.status_code != 204:
            return _outcome(response, None)
    return _outcome(response, response.headers.get("Media-Id"))


def send_direct(base: str, key: str, data: bytes, name: str):
    plan = requests.post(f"{base}/api/v1/direct-uploads/", headers=_auth(key), timeout=TIMEOUT, json={
        "filename": name, "size": len(data), "content_type": "application/octet-stream",
        "sha256": hashlib.sha256(data).hexdigest()})
    if plan.status_code != 201:
        return _outcome(plan, None)
    plan = plan.json()
    parts = []
    for part in plan["parts"]:
        begin = (part["number"] - 1) * plan["part_size"]
        put = requests.put(part["url"], data=data[begin:begin + part["size"]], timeout=TIMEOUT)
        assert put.status_code == 200, put.text
        parts.append({"number": part["number"], "etag": put.headers["ETag"]})
    response = requests.post(plan["complete_url"], json={"parts": parts}, headers=_auth(key), timeout=TIMEOUT)
    body = response.json() if response.status_code in (200, 201) else {}
    return _outcome(response, (body.get("media") or {}).get("id"))


SENDERS = {"multipart": send_multipart, "tus": send_tus, "direct": send_direct}


def race(base: str, key: str, plan: list[tuple[str, bytes]]) -> list[tuple[str, tuple]]:
    """Send every (way, bytes) of `plan` at once, one thread each; returns (way, outcome)s."""
    barrier = threading.Barrier(len(plan))

    def one(index: int) -> tuple[str, tuple]:
        way, data = plan[index]
        barrier.wait(timeout=TIMEOUT)
        return way, SENDERS[way](base, key, data, f"file-{index}.bin")

    with ThreadPoolExecutor(max_workers=len(plan)) as pool:
        return list(pool.map(one, range(len(plan))))


def bucket_state(owner: User) -> tuple[list[str], list[str]]:
    """Every object of the owner in the bucket, and the multipart uploads still open."""
    store = media_storage()
    client = store.connection.meta.client
    listed = client.list_objects_v2(Bucket=store.bucket_name, Prefix=f"{owner.pk}/")
    multipart = client.list_multipart_uploads(Bucket=store.bucket_name)
    return sorted(o["Key"] for o in listed.get("Contents", [])), [u["Key"] for u in multipart.get("Uploads", [])]


def ways_for(mode: str, count: int) -> list[str]:
    return [WAYS[i % len(WAYS)] for i in range(count)] if mode == "mixed" else [mode] * count


# --- Same bytes, many clients -------------------------------------------------------------
@pytest.mark.parametrize("mode", [*WAYS, "mixed"])
def test_the_same_bytes_from_many_clients_at_once_make_one_media(s3, live_server, alice, mode):
    data = os.urandom(SIZE)
    count = 9 if mode == "mixed" else THREADS
    outcomes = race(live_server.url, key_for(alice), [(way, data) for way in ways_for(mode, count)])

    assert all(status in (200, 201, 204) for _, (status, _, _) in outcomes), outcomes
    media = Media.objects.filter(owner=alice)
    assert media.count() == 1, list(media.values("id", "status", "created_at"))
    only = media.get()
    assert only.sha256 == hashlib.sha256(data).hexdigest() and only.size == SIZE
    assert only.status == Media.Status.READY
    # Multipart and tus answer with the media they resolved to: always the one that stays.
    assert {m for way, (_, m, _) in outcomes if way != "direct"} <= {str(only.pk)}
    if mode == "multipart":
        assert sorted(status for _, (status, _, _) in outcomes) == [200] * (THREADS - 1) + [201]
    # Every tus and direct upload ends completed and points at it.
    uploads = Upload.objects.filter(owner=alice)
    assert uploads.count() == sum(1 for way, _ in outcomes if way != "multipart")
    assert set(uploads.values_list("state", "media_id")) <= {(Upload.State.COMPLETED, only.pk)}
    alice.refresh_from_db()
    assert (alice.used_bytes, alice.reserved_bytes) == (SIZE, 0)
    # The copies that lost were deleted: the bucket holds the one original and nothing else.
    assert bucket_state(alice) == ([only.original_key], [])
    assert not Job.objects.exclude(state=Job.State.DONE).exists()


# --- The quota edge ------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [*WAYS, "mixed"])
def test_racing_uploads_at_the_quota_edge_never_pass_it(s3, live_server, mode):
    fits = 3
    erin = user_create(username="erin", password="erin-password", quota_bytes=fits * SIZE + SIZE // 2)
    count = 9 if mode == "mixed" else THREADS
    outcomes = race(live_server.url, key_for(erin), [(way, os.urandom(SIZE)) for way in ways_for(mode, count)])

    succeeded = [o for o in outcomes if o[1][0] in (200, 201, 204)]
    refused = [o for o in outcomes if o[1][0] == 413]
    assert len(succeeded) == fits and len(refused) == count - fits, outcomes
    assert {error for _, (_, _, error) in refused} == {"quota_exceeded"}
    erin.refresh_from_db()
    assert erin.used_bytes == fits * SIZE <= erin.quota_bytes
    assert erin.reserved_bytes == 0
    assert Media.objects.filter(owner=erin).count() == fits
    assert set(Media.objects.filter(owner=erin).values_list("status", flat=True)) == {Media.Status.READY}
    assert Upload.objects.filter(owner=erin).exclude(state=Upload.State.COMPLETED).count() == 0
    keys, open_multipart = bucket_state(erin)
    assert keys == sorted(Media.objects.filter(owner=erin).values_list("original_key", flat=True))
    assert open_multipart == []
