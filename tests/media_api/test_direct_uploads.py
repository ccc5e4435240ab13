"""Direct-to-S3 uploads: presigned part URLs against a moto server, completion, verification, abort."""

from __future__ import annotations

import hashlib
import os

import pytest
import requests

from gallery.models import Media, Upload
from gallery.services.accounts import user_create
from gallery.storage import media_storage
from gallery.uploads.direct import direct_upload_verify
from tests.conftest import api_client

pytestmark = pytest.mark.django_db

MiB = 2**20


@pytest.fixture
def s3(settings, moto_server):
    from tests.conftest import use_storage

    use_storage(settings, moto_server.storage_config(moto_server.new_bucket()))
    settings.DIRECT_UPLOAD_PART_SIZE = 5 * MiB  # S3's smallest part keeps the test small


def client_and_bucket():
    store = media_storage()
    return store.connection.meta.client, store.bucket_name


def start(api, data: bytes, *, sha256: str | None = None, name: str = "clip.mp4"):
    return api.post("/api/v1/direct-uploads/", {
        "filename": name, "size": len(data), "content_type": "video/mp4",
        "sha256": sha256 or hashlib.sha256(data).hexdigest()}, format="json")


def put_parts(plan: dict, data: bytes) -> list[dict]:
    done = []
    for part in plan["parts"]:
        begin = (part["number"] - 1) * plan["part_size"]
        answer = requests.put(part["url"], data=data[begin:begin + part["size"]], timeout=30)
        assert answer.status_code == 200, answer.text
        done.append({"number": part["number"], "etag": answer.headers["ETag"]})
    return done


def test_local_storage_answers_409_with_a_clear_error(alice, alice_api):
    response = start(alice_api, b"abc")
    assert response.status_code == 409
    assert response.json()["error"] == "direct_upload_unavailable" and "tus" in response.json()["detail"]
    alice.refresh_from_db()
    assert alice.reserved_bytes == 0 and not Upload.objects.exists()


def test_parts_go_straight_to_s3_then_complete_records_and_verifies_the_media(
        s3, alice, alice_api, django_capture_on_commit_callbacks):
    data = os.urandom(5 * MiB + 1000)
    created = start(alice_api, data)
    assert created.status_code == 201, created.json()
    plan = created.json()
    assert plan["part_size"] == 5 * MiB and [p["number"] for p in plan["parts"]] == [1, 2]
    assert [p["size"] for p in plan["parts"]] == [5 * MiB, 1000]
    alice.refresh_from_db()
    assert alice.reserved_bytes == len(data)
    parts = put_parts(plan, data)
    with django_capture_on_commit_callbacks(execute=True):
        completed = alice_api.post(f"/api/v1/direct-uploads/{plan['id']}/complete", {"parts": parts}, format="json")
    assert completed.status_code == 201, completed.json()
    body = completed.json()
    assert body["media"]["status"] == "uploading" and body["upload"]["state"] == "completed"
    media = Media.objects.get(pk=body["media"]["id"])
    assert media.status != Media.Status.UPLOADING  # verified, then processed (inline in tests)
    assert media.sha256 == hashlib.sha256(data).hexdigest() and "claimed_sha256" not in media.details
    with media_storage().open(media.original_key, "rb") as fh:
        assert fh.read() == data
    alice.refresh_from_db()
    assert alice.used_bytes == len(data) and alice.reserved_bytes == 0
    assert alice_api.get(f"/api/v1/direct-uploads/{plan['id']}/").json()["media_id"] == str(media.pk)
    client, bucket = client_and_bucket()
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_a_wrong_sha256_claim_is_corrected_not_kept(s3, alice_api, django_capture_on_commit_callbacks):
    data = os.urandom(1000)
    lie = hashlib.sha256(b"something else").hexdigest()
    plan = start(alice_api, data, sha256=lie).json()
    parts = put_parts(plan, data)
    with django_capture_on_commit_callbacks(execute=True):
        body = alice_api.post(f"/api/v1/direct-uploads/{plan['id']}/complete", {"parts": parts}, format="json").json()
    media = Media.objects.get(pk=body["media"]["id"])
    assert media.sha256 == hashlib.sha256(data).hexdigest()
    assert media.details["claimed_sha256"] == lie
    assert not alice_api.get(f"/api/v1/media/?sha256={lie}").json()["results"]


def test_bytes_the_owner_already_has_resolve_to_the_existing_media(s3, alice, alice_api, upload,
                                                                    django_capture_on_commit_callbacks):
    data = os.urandom(2000)
    existing = upload(alice_api, name="first.mp4", data=data).json()
    plan = start(alice_api, data).json()
    parts = put_parts(plan, data)
    with django_capture_on_commit_callbacks(execute=True):
        body = alice_api.post(f"/api/v1/direct-uploads/{plan['id']}/complete", {"parts": parts}, format="json").json()
    assert not Media.objects.filter(pk=body["media"]["id"]).exists()
    assert Media.objects.filter(owner=alice).count() == 1
    assert alice_api.get(f"/api/v1/direct-uploads/{plan['id']}/").json()["media_id"] == existing["id"]
    alice.refresh_from_db()
    assert alice.used_bytes == len(data) and alice.reserved_bytes == 0
    assert not media_storage().exists(Upload.objects.get(pk=plan["id"]).target_key)


def test_a_size_that_does_not_match_discards_the_upload(s3, alice, alice_api, django_capture_on_commit_callbacks):
    data = os.urandom(3000)
    plan = start(alice_api, data).json()
    parts = put_parts(plan, data[:2000])
    with django_capture_on_commit_callbacks(execute=True):
        refused = alice_api.post(f"/api/v1/direct-uploads/{plan['id']}/complete", {"parts": parts}, format="json")
    assert refused.status_code == 400 and refused.json()["size"] == 2000
    alice.refresh_from_db()
    assert alice.reserved_bytes == 0 and alice.used_bytes == 0
    assert not Media.objects.exists()
    assert not media_storage().exists(Upload.objects.get().target_key)
    assert alice_api.get(f"/api/v1/direct-uploads/{plan['id']}/").status_code == 404


def test_bad_parts_lists_are_400(s3, alice_api):
    data = os.urandom(5 * MiB + 1)
    plan = start(alice_api, data).json()
    parts = put_parts(plan, data)
    url = f"/api/v1/direct-uploads/{plan['id']}/complete"
    assert alice_api.post(url, {"parts": parts[::-1]}, format="json").status_code == 400
    assert alice_api.post(url, {"parts": []}, format="json").status_code == 400
    wrong_etag = [parts[0], {"number": 2, "etag": '"0123"'}]
    response = alice_api.post(url, {"parts": wrong_etag}, format="json")
    assert response.status_code == 400 and response.json()["error"] == "invalid"
    assert alice_api.post(url, {"parts": parts}, format="json").status_code == 201


def test_abort_releases_the_reservation_and_the_multipart_upload(s3, alice, alice_api, charlie_api,
                                                                 django_capture_on_commit_callbacks):
    data = os.urandom(4000)
    plan = start(alice_api, data).json()
    put_parts(plan, data)
    url = f"/api/v1/direct-uploads/{plan['id']}/"
    assert charlie_api.delete(url).status_code == 404
    assert charlie_api.post(url + "complete", {"parts": [{"number": 1, "etag": "x"}]}, format="json").status_code == 404
    with django_capture_on_commit_callbacks(execute=True):
        assert alice_api.delete(url).status_code == 204
    alice.refresh_from_db()
    assert alice.reserved_bytes == 0
    client, bucket = client_and_bucket()
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert alice_api.get(url).status_code == 404


def test_direct_upload_over_quota_is_413_and_input_is_validated(s3, db):
    dora = user_create(username="dora", password="dora-password", quota_bytes=1000)
    api = api_client(dora)
    refused = start(api, b"x" * 1001)
    assert refused.status_code == 413 and refused.json()["requested"] == 1001
    bad = api.post("/api/v1/direct-uploads/", {"filename": "a", "size": 0, "sha256": "nope"}, format="json")
    assert bad.status_code == 400 and set(bad.json()["fields"]) == {"size", "sha256"}


def test_part_urls_are_signed_for_the_public_endpoint(s3, settings, moto_server, alice_api,
                                                       django_capture_on_commit_callbacks):
    # The server talks to 127.0.0.1; clients are told another name of the same server.
    public = moto_server.endpoint.replace("127.0.0.1", "localhost")
    settings.S3_PUBLIC_ENDPOINT_URL = public
    data = os.urandom(1000)
    plan = start(alice_api, data).json()
    assert all(part["url"].startswith(public + "/") for part in plan["parts"])
    parts = put_parts(plan, data)  # the signature is valid for the public host
    with django_capture_on_commit_callbacks(execute=True):
        completed = alice_api.post(f"/api/v1/direct-uploads/{plan['id']}/complete", {"parts": parts}, format="json")
    assert completed.status_code == 201, completed.json()


# --- An unverified claim is not a media to resolve to --------------------------------------
def _complete_unverified(api, data: bytes, *, claim: str) -> str:
    """A direct upload of `data` claiming SHA-256 `claim`, completed; its verification job is
    left queued (as when the worker has not got to it yet). Returns the media id."""
    plan = start(api, data, sha256=claim).json()
    body = api.post(f"/api/v1/direct-uploads/{plan['id']}/complete", {"parts": put_parts(plan, data)},
                    format="json").json()
    assert body["media"]["status"] == Media.Status.UPLOADING
    return body["media"]["id"]


def _stored(media: Media) -> bytes:
    with media_storage().open(media.original_key, "rb") as fh:
        return fh.read()


def test_bytes_that_match_only_an_unverified_claim_are_kept_as_their_own_media(s3, alice, alice_api, upload):
    wanted, other = os.urandom(3000), os.urandom(4000)
    liar = _complete_unverified(alice_api, other, claim=hashlib.sha256(wanted).hexdigest())
    # A phone asking whether the server has these bytes is told to send them.
    asked = alice_api.post("/api/v1/media/exists", {"sha256": [hashlib.sha256(wanted).hexdigest()]}, format="json")
    assert asked.json()["missing"] == [hashlib.sha256(wanted).hexdigest()]
    # The real bytes arrive by the multipart way while the claim is unverified.
    response = upload(alice_api, name="real.bin", data=wanted)
    assert response.status_code == 201 and response.json()["id"] != liar
    direct_upload_verify(media_id=liar)
    kept = Media.objects.get(owner=alice, sha256=hashlib.sha256(wanted).hexdigest())
    assert _stored(kept) == wanted
    assert Media.objects.get(pk=liar).sha256 == hashlib.sha256(other).hexdigest()
    alice.refresh_from_db()
    assert (alice.used_bytes, alice.reserved_bytes) == (len(wanted) + len(other), 0)


def test_verification_never_resolves_to_a_media_whose_claim_is_unverified(s3, alice, alice_api):
    wanted, other = os.urandom(3000), os.urandom(4000)
    claim = hashlib.sha256(wanted).hexdigest()
    liar = _complete_unverified(alice_api, other, claim=claim)
    honest = _complete_unverified(alice_api, wanted, claim=claim)
    direct_upload_verify(media_id=honest)  # the honest one is checked first
    direct_upload_verify(media_id=liar)
    by_sha = {m.sha256: m for m in Media.objects.filter(owner=alice)}
    assert set(by_sha) == {claim, hashlib.sha256(other).hexdigest()}
    assert _stored(by_sha[claim]) == wanted
    assert Upload.objects.get(media__isnull=False, sha256=claim, media__sha256=claim).media_id == by_sha[claim].pk
    alice.refresh_from_db()
    assert (alice.used_bytes, alice.reserved_bytes) == (len(wanted) + len(other), 0)
