"""Direct-to-S3 uploads: presigned part URLs against a moto server, completion, verification, abort.

The moto server checks signatures (tests/conftest.py), presigned ones included, so a part
URL works only as it was signed: for this upload, this part, this key, this host.
"""

from __future__ import annotations

import hashlib
import os
import re
from urllib.parse import urlsplit

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


def start(api, data: bytes, *, sha256: str | None = None, name: str = "clip.mp4", content_type: str = "video/mp4"):
    return api.post("/api/v1/direct-uploads/", {
        "filename": name, "size": len(data), "content_type": content_type,
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


def test_a_photo_goes_straight_to_s3_then_is_verified_and_processed(
        s3, alice, alice_api, corpus, django_capture_on_commit_callbacks):
    data = (corpus / "jpg" / "gps" / "DSCN0010.jpg").read_bytes()
    created = start(alice_api, data, name="DSCN0010.jpg", content_type="image/jpeg")
    assert created.status_code == 201, created.json()
    plan = created.json()
    assert [(p["number"], p["size"]) for p in plan["parts"]] == [(1, len(data))]
    alice.refresh_from_db()
    assert alice.reserved_bytes == len(data)
    parts = put_parts(plan, data)
    with django_capture_on_commit_callbacks(execute=True):
        completed = alice_api.post(f"/api/v1/direct-uploads/{plan['id']}/complete", {"parts": parts}, format="json")
    assert completed.status_code == 201, completed.json()
    body = completed.json()
    assert body["media"]["status"] == "uploading" and body["upload"]["state"] == "completed"
    media = Media.objects.get(pk=body["media"]["id"])
    # Verified, then processed (jobs run inline in tests): a real photo ends ready.
    assert media.status == Media.Status.READY, media.error
    assert media.sha256 == hashlib.sha256(data).hexdigest() and "claimed_sha256" not in media.details
    shown = alice_api.get(f"/api/v1/media/{media.pk}/").json()
    assert shown["status"] == "ready" and (shown["width"], shown["height"]) == (640, 480)
    assert shown["place"]["country"] == "Italy"  # the EXIF of the original in S3 was read
    assert set(shown["variants"]) == {"1", "2", "3", "4", "5", "6", "1s", "2s", "3s", "4s"}
    levels = list(media.variants.values_list("level", "storage_key"))
    assert len(levels) == 10
    for level, key in levels:
        assert media_storage().exists(key), level
    with media_storage().open(media.original_key, "rb") as fh:
        assert fh.read() == data
    alice.refresh_from_db()
    assert alice.used_bytes >= len(data) and alice.reserved_bytes == 0
    assert alice_api.get(f"/api/v1/direct-uploads/{plan['id']}/").json()["media_id"] == str(media.pk)
    client, bucket = client_and_bucket()
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_parts_are_assembled_in_order_into_the_original(s3, alice, alice_api, django_capture_on_commit_callbacks):
    data = os.urandom(5 * MiB + 1000)
    plan = start(alice_api, data).json()
    assert plan["part_size"] == 5 * MiB and [p["number"] for p in plan["parts"]] == [1, 2]
    assert [p["size"] for p in plan["parts"]] == [5 * MiB, 1000]
    parts = put_parts(plan, data)
    with django_capture_on_commit_callbacks(execute=True):
        completed = alice_api.post(f"/api/v1/direct-uploads/{plan['id']}/complete", {"parts": parts}, format="json")
    assert completed.status_code == 201, completed.json()
    media = Media.objects.get(pk=completed.json()["media"]["id"])
    with media_storage().open(media.original_key, "rb") as fh:
        assert fh.read() == data
    assert media.sha256 == hashlib.sha256(data).hexdigest()
    # Random bytes named .mp4 are no video: verified and kept as a plain file, typed by its
    # bytes (unknown), so nothing tries to process it.
    assert (media.status, media.kind, media.content_type) == (Media.Status.READY, "other", "application/octet-stream")
    client, bucket = client_and_bucket()
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


def _with_query(url: str, name: str, value: str) -> str:
    changed, count = re.subn(rf"([?&]{name}=)[^&]*", lambda m: m.group(1) + value, url)
    assert count == 1, (name, url)
    return changed


def test_part_urls_work_only_as_signed(s3, alice_api, moto_server, django_capture_on_commit_callbacks):
    data, other = os.urandom(5 * MiB + 1000), os.urandom(3000)
    plan, other_plan = start(alice_api, data).json(), start(alice_api, other).json()
    first = plan["parts"][0]["url"]
    target = Upload.objects.get(pk=plan["id"])
    elsewhere = Upload.objects.get(pk=other_plan["id"])
    signature = re.search(r"X-Amz-Signature=([0-9a-f]{64})", first).group(1)
    forged = {
        "a changed signature": _with_query(first, "X-Amz-Signature", signature[::-1]),
        "another part number": _with_query(first, "partNumber", "2"),
        "another upload's key and id": _with_query(
            first.replace(target.target_key, elsewhere.target_key), "uploadId", elsewhere.s3_upload_id),
        "another host of the same server": first.replace("://127.0.0.1:", "://localhost:"),
        "no signature at all": first.split("?")[0] + "?" + "&".join(
            p for p in urlsplit(first).query.split("&") if not p.startswith("X-Amz-")),
    }
    for what, url in forged.items():
        answer = requests.put(url, data=data[:5 * MiB], timeout=30)
        assert answer.status_code == 403, (what, answer.status_code, answer.text[:300])
    client, bucket = client_and_bucket()
    for upload in (target, elsewhere):
        listed = client.list_parts(Bucket=bucket, Key=upload.target_key, UploadId=upload.s3_upload_id)
        assert not listed.get("Parts"), "a forged URL stored a part"
    # The genuine URLs still work, and the upload completes.
    parts = put_parts(plan, data)
    with django_capture_on_commit_callbacks(execute=True):
        completed = alice_api.post(f"/api/v1/direct-uploads/{plan['id']}/complete", {"parts": parts}, format="json")
    assert completed.status_code == 201, completed.json()
    with media_storage().open(target.target_key, "rb") as fh:
        assert fh.read() == data


def test_the_object_store_refuses_keys_it_does_not_know(s3, moto_server):
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    _, bucket = client_and_bucket()
    stranger = boto3.client("s3", endpoint_url=moto_server.endpoint, region_name="us-east-1",
                            aws_access_key_id=moto_server.credentials["access_key"],
                            aws_secret_access_key="not-the-secret", config=Config(signature_version="s3v4"))
    with pytest.raises(ClientError) as refused:
        stranger.put_object(Bucket=bucket, Key="x", Body=b"x")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    wrong_secret_url = stranger.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "x"})
    assert requests.get(wrong_secret_url, timeout=10).status_code == 403


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
