"""The tus 1.0.0 endpoint through a live server (real HTTP), with tuspy as the client where it fits."""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import os
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from django.db import connection
from rest_framework.test import APIClient
from tusclient.client import TusClient

from gallery.exceptions import QuotaExceeded
from gallery.models import Album, Media, Upload, User
from gallery.services.accounts import apikey_create, user_create
from gallery.storage import media_storage
from gallery.uploads import tus
from tests.media_api.conftest import key_for

pytestmark = pytest.mark.django_db(transaction=True)

MiB = 2**20
OCTETS = "application/offset+octet-stream"


@pytest.fixture
def small_parts(settings):
    # S3's smallest part, so a few MiB exercise parts and staged tails.
    settings.TUS_S3_PART_SIZE = 5 * MiB


def headers(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0", **extra}


def meta(**pairs: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())


def create(endpoint: str, key: str, length: int, filename: str = "file.bin", **extra: str) -> requests.Response:
    return requests.post(endpoint, headers=headers(key, **{"Upload-Length": str(length),
                                                           "Upload-Metadata": meta(filename=filename), **extra}))


def patch(url: str, key: str, offset: int, body: bytes, **extra: str) -> requests.Response:
    return requests.patch(url, data=body, headers=headers(key, **{"Upload-Offset": str(offset),
                                                                 "Content-Type": OCTETS, **extra}))


def stored_bytes(media: Media) -> bytes:
    with media_storage().open(media.original_key, "rb") as fh:
        return fh.read()


def s3_leftovers(owner) -> tuple[list[str], list[str]]:
    """Objects under the owner's uploads prefix and multipart uploads still open in the bucket."""
    store = media_storage()
    client = store.connection.meta.client
    objects = client.list_objects_v2(Bucket=store.bucket_name, Prefix=f"{owner.pk}/library/uploads/")
    multipart = client.list_multipart_uploads(Bucket=store.bucket_name)
    return [o["Key"] for o in objects.get("Contents", [])], [u["UploadId"] for u in multipart.get("Uploads", [])]


# --- Discovery and headers ---------------------------------------------------------------
def test_options_advertises_version_extensions_size_and_checksums(endpoint):
    response = requests.options(endpoint)
    assert response.status_code == 204
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert response.headers["Tus-Version"] == "1.0.0"
    assert set(response.headers["Tus-Extension"].split(",")) >= {
        "creation", "creation-with-upload", "expiration", "checksum", "termination"}
    assert int(response.headers["Tus-Max-Size"]) > 0
    assert set(response.headers["Tus-Checksum-Algorithm"].split(",")) == {"sha1", "md5", "sha256"}


def test_unsupported_version_is_412_and_bad_headers_are_400_json(endpoint, alice_key):
    old = requests.post(endpoint, headers={**headers(alice_key, **{"Upload-Length": "5"}), "Tus-Resumable": "0.2.2"})
    assert old.status_code == 412
    assert old.headers["Tus-Version"] == "1.0.0" and old.headers["Tus-Resumable"] == "1.0.0"
    assert old.json()["error"] == "unsupported_version"
    for bad in ({"Upload-Length": "-1"}, {"Upload-Length": "ten"}, {},
                {"Upload-Length": "5", "Upload-Metadata": "filename not*base64"},
                {"Upload-Length": "5", "Upload-Concat": "partly"},
                {"Upload-Length": "5", "Upload-Concat": "final;/api/v1/uploads/x"}):
        response = requests.post(endpoint, headers=headers(alice_key, **bad))
        assert response.status_code == 400, bad
        assert response.json()["error"] == "invalid" and response.headers["Tus-Resumable"] == "1.0.0"
    url = create(endpoint, alice_key, 4).headers["Location"]
    for bad in ({"Upload-Offset": "x"}, {"Upload-Checksum": "crc32 AAAA"}, {"Upload-Checksum": "sha1 !!"}):
        response = patch(url, alice_key, 0, b"abcd", **bad)
        assert response.status_code == 400, bad
        assert response.json()["error"] == "invalid"
    assert requests.head(url, headers=headers(alice_key)).headers["Upload-Offset"] == "0"


def test_anonymous_is_401_and_a_read_only_key_cannot_create(endpoint, alice):
    assert requests.post(endpoint, headers={"Tus-Resumable": "1.0.0", "Upload-Length": "3"}).status_code == 401
    _, read_only = apikey_create(user=alice, name="ro", scopes=["media.read"])
    assert create(endpoint, read_only, 3).status_code == 403
    assert not Upload.objects.exists()


# --- Core: create, patch, head, resume ---------------------------------------------------
def test_upload_stop_and_resume_with_a_new_client_gives_identical_bytes(storage, small_parts, endpoint, alice,
                                                                         alice_key):
    data = os.urandom(12 * MiB + 12345)
    first = TusClient(endpoint, headers={"Authorization": f"Bearer {alice_key}"})
    uploader = first.uploader(file_stream=io.BytesIO(data), chunk_size=3 * MiB,
                              metadata={"filename": "big.bin", "filetype": "application/octet-stream"})
    uploader.upload_chunk()
    uploader.upload_chunk()
    assert uploader.offset == 6 * MiB
    row = Upload.objects.get()
    if storage == "s3":  # 6 MiB in 5 MiB parts: one part uploaded, 1 MiB staged as the tail
        assert [p["size"] for p in row.parts] == [5 * MiB] and row.tail_size == MiB and row.tail_key
    else:
        assert Path(media_storage().path(row.part_key)).stat().st_size == 6 * MiB
    # The "phone" restarts: a new client, told only the URL, asks the server where to go on.
    second = TusClient(endpoint, headers={"Authorization": f"Bearer {alice_key}"})
    resumed = second.uploader(file_stream=io.BytesIO(data), chunk_size=5 * MiB, url=uploader.url)
    assert resumed.offset == 6 * MiB
    resumed.upload()
    media_id = resumed.request.response_headers["media-id"]
    media = Media.objects.get(pk=media_id, owner=alice)
    assert stored_bytes(media) == data
    assert media.sha256 == hashlib.sha256(data).hexdigest() and media.size == len(data)
    assert media.original_filename == "big.bin"
    alice.refresh_from_db()
    assert alice.used_bytes == len(data) and alice.reserved_bytes == 0
    row.refresh_from_db()
    assert row.state == Upload.State.COMPLETED and row.media_id == media.pk
    head = requests.head(uploader.url, headers=headers(alice_key))
    assert head.status_code == 200 and head.headers["Upload-Offset"] == str(len(data))
    assert head.headers["Media-Id"] == media_id
    if storage == "s3":
        assert s3_leftovers(alice) == ([], [])
    else:
        assert not list(Path(media_storage().path(f"{alice.pk}/library/uploads")).glob("*"))


def test_head_reports_offset_length_metadata_expiry_and_no_store(endpoint, alice_key):
    created = create(endpoint, alice_key, 10, filename="notes.txt")
    assert created.status_code == 201
    assert created.headers["Upload-Offset"] == "0" and "Upload-Expires" in created.headers
    url = created.headers["Location"]
    assert patch(url, alice_key, 0, b"hello").headers["Upload-Offset"] == "5"
    head = requests.head(url, headers=headers(alice_key))
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == "5" and head.headers["Upload-Length"] == "10"
    assert head.headers["Cache-Control"] == "no-store" and head.headers["Tus-Resumable"] == "1.0.0"
    assert "Upload-Expires" in head.headers
    assert "filename " + base64.b64encode(b"notes.txt").decode() in head.headers["Upload-Metadata"]


def test_patch_needs_the_offset_content_type_and_stays_within_length(endpoint, alice_key):
    url = create(endpoint, alice_key, 6).headers["Location"]
    wrong_type = requests.patch(url, data=b"abc", headers=headers(alice_key, **{
        "Upload-Offset": "0", "Content-Type": "application/octet-stream"}))
    assert wrong_type.status_code == 415 and wrong_type.json()["error"] == "unsupported_media_type"
    assert patch(url, alice_key, 0, b"abc").status_code == 204
    stale = patch(url, alice_key, 0, b"abc")
    assert stale.status_code == 409
    assert stale.json()["error"] == "offset_mismatch" and stale.json()["offset"] == 3
    ahead = patch(url, alice_key, 5, b"f")
    assert ahead.status_code == 409
    too_long = patch(url, alice_key, 3, b"defg")
    assert too_long.status_code == 400
    done = patch(url, alice_key, 3, b"def")
    assert done.status_code == 204 and done.headers["Upload-Offset"] == "6" and "Media-Id" in done.headers
    assert stored_bytes(Media.objects.get(pk=done.headers["Media-Id"])) == b"abcdef"
    # The client lost the answer to its last PATCH and asks again: same media, nothing new.
    again = patch(url, alice_key, 6, b"")
    assert again.status_code == 204 and again.headers["Media-Id"] == done.headers["Media-Id"]


def test_creation_with_upload_and_x_http_method_override(endpoint, alice_key):
    created = requests.post(endpoint, data=b"first", headers=headers(alice_key, **{
        "Upload-Length": "11", "Upload-Metadata": meta(filename="o.txt"), "Content-Type": OCTETS}))
    assert created.status_code == 201 and created.headers["Upload-Offset"] == "5"
    url = created.headers["Location"]
    via_post = requests.post(url, data=b" last", headers=headers(alice_key, **{
        "X-HTTP-Method-Override": "PATCH", "Upload-Offset": "5", "Content-Type": OCTETS}))
    assert via_post.status_code == 204 and via_post.headers["Upload-Offset"] == "10"
    head = requests.post(url, headers=headers(alice_key, **{"X-HTTP-Method-Override": "HEAD"}))
    assert head.headers["Upload-Offset"] == "10"
    deleted = requests.post(url, headers=headers(alice_key, **{"X-HTTP-Method-Override": "DELETE"}))
    assert deleted.status_code == 204
    assert requests.head(url, headers=headers(alice_key)).status_code == 404


def test_zero_length_upload_completes_at_creation(storage, endpoint, alice_key):
    created = create(endpoint, alice_key, 0, filename="empty.txt")
    assert created.status_code == 201 and created.headers["Upload-Offset"] == "0"
    media = Media.objects.get(pk=created.headers["Media-Id"])
    assert media.size == 0 and media.sha256 == hashlib.sha256(b"").hexdigest()
    assert stored_bytes(media) == b""


# --- Checksum ----------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["sha1", "md5", "sha256"])
def test_checksum_mismatch_is_460_and_the_chunk_is_discarded(storage, small_parts, endpoint, alice_key, algorithm):
    data = os.urandom(7 * MiB)
    url = create(endpoint, alice_key, len(data)).headers["Location"]

    def checksum(body: bytes) -> str:
        return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, body).digest()).decode()}"

    first = data[: 6 * MiB]
    assert patch(url, alice_key, 0, first, **{"Upload-Checksum": checksum(first)}).status_code == 204
    rest = data[6 * MiB:]
    corrupted = bytes([rest[0] ^ 0xFF]) + rest[1:]
    refused = patch(url, alice_key, 6 * MiB, corrupted, **{"Upload-Checksum": checksum(rest)})
    assert refused.status_code == 460 and refused.json()["error"] == "checksum_mismatch"
    assert requests.head(url, headers=headers(alice_key)).headers["Upload-Offset"] == str(6 * MiB)
    good = patch(url, alice_key, 6 * MiB, rest, **{"Upload-Checksum": checksum(rest)})
    assert good.status_code == 204
    assert stored_bytes(Media.objects.get(pk=good.headers["Media-Id"])) == data


def test_tuspy_with_checksums(endpoint, alice_key):
    data = os.urandom(2 * MiB + 7)
    client = TusClient(endpoint, headers={"Authorization": f"Bearer {alice_key}"})
    uploader = client.uploader(file_stream=io.BytesIO(data), chunk_size=MiB, upload_checksum=True,
                               metadata={"filename": "c.bin"})
    uploader.upload()
    assert stored_bytes(Media.objects.get(pk=uploader.request.response_headers["media-id"])) == data


# --- Expiry, termination, ownership ------------------------------------------------------
def test_an_expired_upload_answers_410_and_gives_back_its_reservation(storage, small_parts, endpoint, alice,
                                                                       alice_key):
    url = create(endpoint, alice_key, 6 * MiB).headers["Location"]
    assert patch(url, alice_key, 0, os.urandom(MiB)).status_code == 204
    alice.refresh_from_db()
    assert alice.reserved_bytes == 6 * MiB
    expires = requests.head(url, headers=headers(alice_key)).headers["Upload-Expires"]
    assert expires.endswith("GMT")
    Upload.objects.update(expires_at=Upload.objects.get().expires_at.replace(year=2000))
    assert requests.head(url, headers=headers(alice_key)).status_code == 410
    assert patch(url, alice_key, MiB, b"x").status_code == 410
    alice.refresh_from_db()
    assert alice.reserved_bytes == 0 and alice.used_bytes == 0
    assert Upload.objects.get().state == Upload.State.EXPIRED
    if storage == "s3":
        assert s3_leftovers(alice) == ([], [])
    else:
        assert not media_storage().exists(Upload.objects.get().part_key)


def test_termination_deletes_bytes_releases_the_reservation_then_404(storage, small_parts, endpoint, alice,
                                                                      alice_key):
    url = create(endpoint, alice_key, 11 * MiB).headers["Location"]
    assert patch(url, alice_key, 0, os.urandom(6 * MiB)).status_code == 204  # a part and a tail on S3
    response = requests.delete(url, headers=headers(alice_key))
    assert response.status_code == 204 and response.headers["Tus-Resumable"] == "1.0.0"
    for method in ("head", "patch", "delete"):
        again = requests.request(method, url, headers=headers(alice_key, **{"Upload-Offset": str(6 * MiB),
                                                                            "Content-Type": OCTETS}))
        assert again.status_code == 404, method
    alice.refresh_from_db()
    assert alice.reserved_bytes == 0 and alice.used_bytes == 0
    if storage == "s3":
        assert s3_leftovers(alice) == ([], [])
    else:
        assert not media_storage().exists(Upload.objects.get().part_key)


def test_another_users_upload_is_404_for_head_patch_and_delete(endpoint, alice_key, charlie):
    url = create(endpoint, alice_key, 3).headers["Location"]
    charlie_key = key_for(charlie)
    assert requests.head(url, headers=headers(charlie_key)).status_code == 404
    sneaky = patch(url, charlie_key, 0, b"abc")
    assert sneaky.status_code == 404 and sneaky.json()["error"] == "not_found"
    assert requests.delete(url, headers=headers(charlie_key)).status_code == 404
    assert requests.head(url, headers=headers(alice_key)).headers["Upload-Offset"] == "0"
    assert requests.head(endpoint + "not-a-uuid", headers=headers(charlie_key)).status_code == 404


# --- Dedup, quota, usage, album ----------------------------------------------------------
def test_same_bytes_again_resolve_to_the_existing_media_and_the_copy_is_deleted(storage, endpoint, alice,
                                                                                alice_key):
    data = os.urandom(100_000)
    first = patch(create(endpoint, alice_key, len(data)).headers["Location"], alice_key, 0, data)
    second_url = create(endpoint, alice_key, len(data), filename="again.bin").headers["Location"]
    second = patch(second_url, alice_key, 0, data)
    assert second.status_code == 204 and second.headers["Media-Id"] == first.headers["Media-Id"]
    assert Media.objects.filter(owner=alice).count() == 1
    alice.refresh_from_db()
    assert alice.used_bytes == len(data) and alice.reserved_bytes == 0
    duplicate_key = Upload.objects.get(pk=second_url.rsplit("/", 1)[1]).target_key
    assert not media_storage().exists(duplicate_key)
    sha = hashlib.sha256(data).hexdigest()
    found = requests.get(f"{endpoint.replace('uploads/', 'media/')}?sha256={sha}", headers=headers(alice_key))
    assert [m["id"] for m in found.json()["results"]] == [first.headers["Media-Id"]]


def test_over_quota_creation_is_413_with_the_numbers(endpoint, db):
    dora = user_create(username="dora", password="dora-password", quota_bytes=1000)
    key = key_for(dora)
    assert create(endpoint, key, 600).status_code == 201
    refused = create(endpoint, key, 401)
    assert refused.status_code == 413
    body = refused.json()
    assert body["error"] == "quota_exceeded"
    assert (body["quota"], body["used"], body["reserved"], body["requested"]) == (1000, 0, 600, 401)
    assert refused.headers["Tus-Resumable"] == "1.0.0"
    assert create(endpoint, key, 400).status_code == 201
    too_big = create(endpoint, key, 10**15)
    assert too_big.status_code == 413 and too_big.json()["error"] == "too_large"


def test_usage_counts_reservations_until_completion(endpoint, alice_key):
    usage_url = endpoint.replace("uploads/", "usage/")
    url = create(endpoint, alice_key, 8).headers["Location"]
    usage = requests.get(usage_url, headers=headers(alice_key)).json()
    assert (usage["used"], usage["reserved"]) == (0, 8)
    assert usage["free"] == usage["quota"] - 8
    patch(url, alice_key, 0, b"12345678")
    usage = requests.get(usage_url, headers=headers(alice_key)).json()
    assert (usage["used"], usage["reserved"]) == (8, 0)


def test_album_metadata_puts_the_media_in_that_album(endpoint, alice, alice_key, charlie):
    album = Album.objects.create(owner=alice, title="Trip")
    theirs = Album.objects.create(owner=charlie, title="Not yours")
    refused = requests.post(endpoint, headers=headers(alice_key, **{
        "Upload-Length": "3", "Upload-Metadata": meta(filename="a.txt", album=str(theirs.pk))}))
    assert refused.status_code == 400
    created = requests.post(endpoint, headers=headers(alice_key, **{
        "Upload-Length": "3", "Upload-Metadata": meta(filename="a.txt", filetype="text/plain", album=str(album.pk))}))
    done = patch(created.headers["Location"], alice_key, 0, b"abc")
    media = Media.objects.get(pk=done.headers["Media-Id"])
    assert list(album.media.all()) == [media] and media.content_type == "text/plain"


def test_media_exists_lists_what_the_caller_has(alice_api, bob_api, upload):
    have = upload(alice_api, name="a.txt", data=b"alice has this").json()
    upload(bob_api, name="b.txt", data=b"only bob has this")
    mine, bobs, nobody = (hashlib.sha256(b).hexdigest() for b in (b"alice has this", b"only bob has this", b"?"))
    for url in ("/api/v1/media/exists", "/api/v1/media/exists/"):
        response = alice_api.post(url, {"sha256": [mine, bobs.upper(), nobody]}, format="json")
        assert response.status_code == 200
        body = response.json()
        assert body["exists"] == [mine] and body["media"] == {mine: have["id"]}
        assert sorted(body["missing"]) == sorted([bobs, nobody])
    assert alice_api.post("/api/v1/media/exists", {"sha256": ["xyz"]}, format="json").status_code == 400


# --- Concurrency and interruptions -------------------------------------------------------
def _start_patch(url: str, key: str, offset: int, length: int) -> http.client.HTTPConnection:
    """Open a PATCH promising `length` bytes and send its headers only."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest("PATCH", parts.path)
    for name, value in headers(key, **{"Upload-Offset": str(offset), "Content-Type": OCTETS,
                                       "Content-Length": str(length)}).items():
        conn.putheader(name, value)
    conn.endheaders()
    return conn


def _wait_for_lease(upload_id, held: bool) -> None:
    for _ in range(200):
        if bool(Upload.objects.get(pk=upload_id).lease_token) == held:
            return
        time.sleep(0.02)
    raise AssertionError("the lease never changed")


def test_two_racing_patches_never_interleave_the_loser_gets_409(storage, endpoint, alice_key):
    url = create(endpoint, alice_key, 200_000).headers["Location"]
    upload_id = url.rsplit("/", 1)[1]
    slow = _start_patch(url, alice_key, 0, 200_000)
    slow.send(b"A" * 100_000)
    _wait_for_lease(upload_id, held=True)
    loser = patch(url, alice_key, 0, b"B" * 200_000)
    assert loser.status_code == 409 and loser.json()["error"] == "upload_busy"
    slow.send(b"A" * 100_000)
    winner = slow.getresponse()
    assert winner.status == 204
    media = Media.objects.get(pk=winner.getheader("Media-Id"))
    assert stored_bytes(media) == b"A" * 200_000


def test_a_patch_cut_short_keeps_what_arrived_and_the_client_resumes(storage, small_parts, endpoint, alice_key):
    data = os.urandom(8 * MiB)
    url = create(endpoint, alice_key, len(data)).headers["Location"]
    upload_id = url.rsplit("/", 1)[1]
    dropped = _start_patch(url, alice_key, 0, len(data))
    dropped.send(data[: 6 * MiB + 500])
    _wait_for_lease(upload_id, held=True)
    dropped.sock.close()  # the network goes away mid-body
    _wait_for_lease(upload_id, held=False)
    offset = int(requests.head(url, headers=headers(alice_key)).headers["Upload-Offset"])
    assert offset == 6 * MiB + 500
    done = patch(url, alice_key, offset, data[offset:])
    assert done.status_code == 204
    assert stored_bytes(Media.objects.get(pk=done.headers["Media-Id"])) == data


def test_hash_is_right_when_the_next_patch_lands_on_another_process(storage, small_parts, endpoint, alice_key):
    data = os.urandom(6 * MiB + 3)
    url = create(endpoint, alice_key, len(data)).headers["Location"]
    assert patch(url, alice_key, 0, data[:MiB]).status_code == 204
    tus.running_hashes.drop(Upload.objects.get().pk)  # as if the next PATCH went to another server
    done = patch(url, alice_key, MiB, data[MiB:])
    media = Media.objects.get(pk=done.headers["Media-Id"])
    assert media.sha256 == hashlib.sha256(data).hexdigest()


def test_session_credential_works_with_csrf_header_only(alice, settings):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    token = client.get("/login/").cookies["csrftoken"].value
    common = {"HTTP_TUS_RESUMABLE": "1.0.0", "HTTP_UPLOAD_LENGTH": "2", "HTTP_UPLOAD_METADATA": meta(filename="s.txt")}
    assert client.post("/api/v1/uploads/", **common).status_code == 403
    created = client.post("/api/v1/uploads/", HTTP_X_CSRFTOKEN=token, **common)
    assert created.status_code == 201
    url = created["Location"]
    body = {"HTTP_TUS_RESUMABLE": "1.0.0", "HTTP_UPLOAD_OFFSET": "0", "HTTP_X_CSRFTOKEN": token}
    done = client.generic("PATCH", url, b"hi", content_type=OCTETS, **body)
    assert done.status_code == 204 and Media.objects.filter(owner=alice, pk=done["Media-Id"]).exists()


# --- The quota cannot be raced -----------------------------------------------------------
def test_concurrent_creations_never_exceed_the_quota(transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL): SQLite serialises every writer anyway")
    quota, size, threads = 10 * MiB, 3 * MiB, 12
    erin = user_create(username="erin", password="erin-password", quota_bytes=quota)
    barrier = threading.Barrier(threads)
    outcomes: list[str] = []

    def attempt(index: int) -> None:
        from django.db import connection as thread_connection

        try:
            barrier.wait()
            tus.upload_create(owner=User.objects.get(pk=erin.pk), length=size, filename=f"{index}.bin")
            outcomes.append("ok")
        except QuotaExceeded:
            outcomes.append("413")
        finally:
            thread_connection.close()

    workers = [threading.Thread(target=attempt, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    erin.refresh_from_db()
    assert outcomes.count("ok") == quota // size and outcomes.count("413") == threads - quota // size
    assert erin.reserved_bytes == (quota // size) * size <= quota
    assert Upload.objects.filter(owner=erin).count() == quota // size


# --- Under ASGI the body streams to the view --------------------------------------------
async def _asgi_patch(upload_id, key: str, offset: int, messages: list[dict], *,
                      promised: int | None = None) -> tuple[dict, list[dict]]:
    from asgiref.testing import ApplicationCommunicator

    from media_api.streaming import StreamingUploadASGIHandler

    length = sum(len(m.get("body", b"")) for m in messages)
    scope = {"type": "http", "method": "PATCH", "path": f"/api/v1/uploads/{upload_id}", "query_string": b"",
             "http_version": "1.1", "scheme": "http", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80),
             "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {key}".encode()),
                         (b"tus-resumable", b"1.0.0"), (b"upload-offset", str(offset).encode()),
                         (b"content-type", OCTETS.encode()),
                         (b"content-length", str(promised or length).encode())]}
    communicator = ApplicationCommunicator(StreamingUploadASGIHandler(), scope)
    for message in messages:
        await communicator.send_input(message)
    await communicator.wait(timeout=20)
    sent = []
    while not communicator.output_queue.empty():
        sent.append(await communicator.receive_output())
    start = next((m for m in sent if m["type"] == "http.response.start"), {})
    return start, sent


@pytest.fixture
def connections_closed_after_requests():
    # The handler runs each request in a thread of its own; with persistent connections
    # (PostgreSQL) those threads would keep the test database open past the test.
    from django.db import connections

    config = connections.settings["default"]
    before, config["CONN_MAX_AGE"] = config["CONN_MAX_AGE"], 0
    yield
    config["CONN_MAX_AGE"] = before


async def test_asgi_streams_the_body_and_keeps_what_arrived_before_a_disconnect(
        alice, alice_key, connections_closed_after_requests):
    from asgiref.sync import sync_to_async

    upload = (await sync_to_async(tus.upload_create)(owner=alice, length=300_000, filename="a.bin")).upload
    data = os.urandom(300_000)
    # The connection drops after 120,000 of the promised bytes: they are kept.
    await _asgi_patch(upload.pk, alice_key, 0, [
        {"type": "http.request", "body": data[:70_000], "more_body": True},
        {"type": "http.request", "body": data[70_000:120_000], "more_body": True},
        {"type": "http.disconnect"},
    ], promised=300_000)
    row = await sync_to_async(Upload.objects.get)(pk=upload.pk)
    assert row.offset == 120_000 and not row.lease_token
    start, _ = await _asgi_patch(upload.pk, alice_key, 120_000, [
        {"type": "http.request", "body": data[120_000:200_000], "more_body": True},
        {"type": "http.request", "body": data[200_000:], "more_body": False},
    ])
    assert start["status"] == 204
    answer = {name.lower(): value for name, value in start["headers"]}
    assert answer[b"upload-offset"] == b"300000" and answer[b"tus-resumable"] == b"1.0.0"
    media = await sync_to_async(Media.objects.get)(pk=answer[b"media-id"].decode())
    assert await sync_to_async(stored_bytes)(media) == data
    await sync_to_async(lambda: connection.close())()  # the connection of that helper thread


@pytest.fixture
def loop_thread():
    """An event loop running in a thread of its own, as uvicorn's runs beside the view's."""
    import asyncio

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    loop.close()


def test_the_body_stream_holds_at_most_its_buffer_and_keeps_the_order(loop_thread):
    from media_api.streaming import BUFFER_BYTES, ASGIBodyStream

    pieces = [os.urandom(MiB // 2 + i) for i in range(3 * BUFFER_BYTES // MiB)]
    handed = []

    async def receive():
        handed.append(len(handed))
        return {"type": "http.request", "body": pieces[len(handed) - 1], "more_body": len(handed) < len(pieces)}

    stream = ASGIBodyStream(receive, loop_thread)
    got = [stream.read(1)]  # starts receiving
    time.sleep(0.3)
    # Receiving stopped once the buffer was full (at most one piece past it), until the view reads.
    assert sum(len(p) for p in pieces[:len(handed) - 1]) < BUFFER_BYTES < sum(len(p) for p in pieces)
    while chunk := stream.read(4 * MiB):
        assert len(chunk) <= 4 * MiB
        got.append(chunk)
    assert b"".join(got) == b"".join(pieces) and len(handed) == len(pieces)


def test_a_body_stream_read_hands_on_what_a_slow_client_sent(loop_thread):
    """A read asks for more than a slow client sends in a while: it gets what is here at once
    (the view writes it and renews its lease), not once the size is reached."""
    import asyncio

    from media_api.streaming import ASGIBodyStream

    messages = [{"type": "http.request", "body": b"a" * 1000, "more_body": True},
                {"type": "http.request", "body": b"b" * 500, "more_body": True},
                {"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        if len(messages) < 3:
            await asyncio.sleep(1)
        return messages.pop(0)

    stream = ASGIBodyStream(receive, loop_thread)
    started = time.monotonic()
    assert stream.read(4 * MiB) == b"a" * 1000
    assert time.monotonic() - started < 0.5
    assert stream.read(4 * MiB) == b"b" * 500  # after the client's second
    assert stream.read(4 * MiB) == b""


def test_the_timeline_page_loads_the_tus_uploader_and_keeps_the_plain_form(client, alice):
    from django.conf import settings

    client.force_login(alice)
    html = client.get("/").content.decode()
    assert 'data-tus-endpoint="/api/v1/uploads/"' in html and 'enctype="multipart/form-data"' in html
    assert "vendor/tus-js-client-4.3.1/tus.min.js" in html and "gallery/upload.js" in html
    vendored = settings.BASE_DIR / "static" / "vendor" / "tus-js-client-4.3.1"
    assert (vendored / "tus.min.js").stat().st_size > 10_000 and "MIT" in (vendored / "LICENSE").read_text()
    script = (settings.BASE_DIR / "static" / "gallery" / "upload.js").read_text()
    for needed in ("X-CSRFToken", "findPreviousUploads", "resumeFromPreviousUpload", "onProgress", "drop"):
        assert needed in script


def test_the_files_own_date_is_the_fallback_taken_at(endpoint, alice, alice_key, corpus, monkeypatch,
                                                     django_capture_on_commit_callbacks):
    from datetime import datetime, timezone

    from django.utils import timezone as django_timezone

    # A text file has no capture date: the browser's File.lastModified stands in, estimated.
    modified_ms = str(int(datetime(2019, 7, 14, 10, 30, tzinfo=timezone.utc).timestamp() * 1000))
    data = b"notes from the trip"
    created = requests.post(endpoint, data=data, headers=headers(
        alice_key, **{"Upload-Length": str(len(data)), "Content-Type": OCTETS,
                      "Upload-Metadata": meta(filename="notes.txt", lastModified=modified_ms)}))
    assert created.status_code == 201, created.text
    notes = Media.objects.get(pk=created.headers["Media-Id"])
    assert notes.taken_at == datetime(2019, 7, 14, 10, 30, tzinfo=timezone.utc) and notes.taken_at_estimated
    # A photo's EXIF date wins over the file date once processed.
    photo = (corpus / "jpg" / "Canon_40D.jpg").read_bytes()
    with django_capture_on_commit_callbacks(execute=True):
        created = requests.post(endpoint, data=photo, headers=headers(
            alice_key, **{"Upload-Length": str(len(photo)), "Content-Type": OCTETS,
                          "Upload-Metadata": meta(filename="c.jpg", lastModified=modified_ms)}))
    assert created.status_code == 201, created.text
    # live_server runs the request in another thread: process here, as the worker would.
    from gallery.processing.pipeline import media_process

    media_process(media_id=created.headers["Media-Id"])
    photo_media = Media.objects.get(pk=created.headers["Media-Id"])
    assert photo_media.taken_at_local().replace(tzinfo=None) == datetime(2008, 5, 30, 15, 56, 1)
    assert not photo_media.taken_at_estimated
    # Nonsense (past any calendar, or days ahead of the server's clock) is ignored: the upload
    # time stays. The clock is fixed so "the upload time" is a known instant.
    upload_time = datetime(2031, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    two_days_ahead = str(int((upload_time.timestamp() + 2 * 86400) * 1000))
    with monkeypatch.context() as frozen:
        frozen.setattr(django_timezone, "now", lambda: upload_time)
        for nonsense in ("99999999999999999", two_days_ahead):
            created = requests.post(endpoint, data=nonsense.encode(), headers=headers(
                alice_key, **{"Upload-Length": str(len(nonsense)), "Content-Type": OCTETS,
                              "Upload-Metadata": meta(filename="x.txt", lastModified=nonsense)}))
            assert created.status_code == 201, created.text
            media = Media.objects.get(pk=created.headers["Media-Id"])
            assert media.taken_at == upload_time and media.taken_at_estimated, nonsense
