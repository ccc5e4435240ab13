"""Limits on what an upload may cost before its bytes count (issue "Hardening", item 4):
the size of Upload-Metadata, the number of unfinished uploads per user, and creations whose
Upload-Length cannot fit, refused before anything is stored."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from gallery.models import Upload, User
from gallery.services.accounts import user_create
from gallery.storage import media_storage
from tests.conftest import api_client

pytestmark = pytest.mark.django_db

TUS = {"HTTP_TUS_RESUMABLE": "1.0.0"}
OCTETS = "application/offset+octet-stream"
MiB = 2**20


def create(api, length: int = 1, metadata: str | None = None, body: bytes | None = None):
    extra = {"HTTP_UPLOAD_LENGTH": str(length), **TUS}
    if metadata is not None:
        extra["HTTP_UPLOAD_METADATA"] = metadata
    if body is not None:
        return api.post("/api/v1/uploads/", data=body, content_type=OCTETS, **extra)
    return api.post("/api/v1/uploads/", **extra)


def metadata_of_size(size: int) -> str:
    """A valid Upload-Metadata header of exactly `size` bytes."""
    for key in ("n", "no", "not", "note"):  # base64 comes in fours: one key length fits
        prefix = "filename " + base64.b64encode(b"a.jpg").decode() + f",{key} "
        if (size - len(prefix)) % 4 == 0:
            header = prefix + base64.b64encode(b"x" * ((size - len(prefix)) // 4 * 3)).decode()
            assert len(header) == size
            return header
    raise AssertionError("unreachable")


def files_under(root: Path) -> list[Path]:
    return [p for p in Path(root).rglob("*") if p.is_file()] if Path(root).exists() else []


# --- Upload-Metadata ---------------------------------------------------------------------
def test_metadata_over_the_limit_is_400_and_nothing_is_stored(alice, alice_api, settings):
    settings.UPLOAD_METADATA_MAX_BYTES = 4096
    response = create(alice_api, length=10, metadata=metadata_of_size(4096 + 4))
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "metadata_too_large" and "Upload-Metadata" in body["detail"]
    assert body["max_bytes"] == 4096
    assert not Upload.objects.exists()
    assert User.objects.get(pk=alice.pk).reserved_bytes == 0


def test_metadata_up_to_the_limit_is_kept(alice_api, settings):
    settings.UPLOAD_METADATA_MAX_BYTES = 4096
    response = create(alice_api, length=10, metadata=metadata_of_size(4096))
    assert response.status_code == 201, response.content
    assert Upload.objects.get().metadata["filename"] == "a.jpg"


def test_the_default_metadata_limit_is_4_kib():
    assert django_settings.UPLOAD_METADATA_MAX_BYTES == 4096


def test_a_final_upload_with_too_much_metadata_is_refused_too(alice_api, settings):
    settings.UPLOAD_METADATA_MAX_BYTES = 100
    response = alice_api.post("/api/v1/uploads/", HTTP_UPLOAD_CONCAT="final;/api/v1/uploads/x",
                              HTTP_UPLOAD_METADATA=metadata_of_size(104), **TUS)
    assert response.status_code == 400 and response.json()["error"] == "metadata_too_large"


# --- Unfinished uploads per user ---------------------------------------------------------
def test_unfinished_uploads_per_user_are_capped_with_429(alice, alice_api, bob_api, settings):
    settings.UPLOAD_MAX_ACTIVE = 3
    urls = []
    for _ in range(3):
        response = create(alice_api)
        assert response.status_code == 201
        urls.append(response["Location"])
    refused = create(alice_api)
    assert refused.status_code == 429
    body = refused.json()
    assert body["error"] == "too_many_uploads" and body["max_active"] == 3 and body["detail"]
    assert Upload.objects.filter(owner=alice).count() == 3
    assert User.objects.get(pk=alice.pk).reserved_bytes == 3  # the refused one reserved nothing
    assert create(bob_api).status_code == 201  # a cap per user, not per server
    # Terminating one frees its place.
    assert alice_api.delete(urls[0], **TUS).status_code == 204
    assert create(alice_api).status_code == 201
    assert create(alice_api).status_code == 429


def test_finished_and_expired_uploads_do_not_count(alice, alice_api, settings):
    settings.UPLOAD_MAX_ACTIVE = 1
    finished = create(alice_api, length=3, body=b"abc")  # creation-with-upload: complete at once
    assert finished.status_code == 201 and finished["Media-Id"]
    stale = create(alice_api)
    assert stale.status_code == 201
    assert create(alice_api).status_code == 429
    Upload.objects.filter(state=Upload.State.ACTIVE).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert create(alice_api).status_code == 201


def test_the_default_cap_is_100():
    assert django_settings.UPLOAD_MAX_ACTIVE == 100


@pytest.fixture
def s3(settings, moto_server):
    from tests.conftest import use_storage

    use_storage(settings, moto_server.storage_config(moto_server.new_bucket()))
    settings.DIRECT_UPLOAD_PART_SIZE = 5 * MiB


def direct(api, size: int = 10):
    return api.post("/api/v1/direct-uploads/", {"filename": "a.mp4", "size": size, "content_type": "video/mp4",
                                                "sha256": hashlib.sha256(b"x").hexdigest()}, format="json")


def test_direct_and_tus_uploads_share_the_cap(s3, alice, alice_api, settings):
    settings.UPLOAD_MAX_ACTIVE = 2
    assert create(alice_api).status_code == 201
    assert direct(alice_api).status_code == 201
    refused = direct(alice_api)
    assert refused.status_code == 429 and refused.json()["error"] == "too_many_uploads"
    assert create(alice_api).status_code == 429
    store = media_storage()
    open_multipart = store.connection.meta.client.list_multipart_uploads(Bucket=store.bucket_name)
    assert len(open_multipart.get("Uploads", [])) == 1  # the refused one started nothing in S3


# --- A creation that cannot fit stores nothing -------------------------------------------
@pytest.mark.parametrize("limit", ["quota", "max_size"])
def test_a_creation_that_cannot_fit_is_refused_before_anything_is_stored(db, settings, tmp_path, limit):
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "upload-tmp")
    Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir()
    dora = user_create(username="dora", password="dora-password", quota_bytes=10 * MiB)
    api = api_client(dora)
    if limit == "max_size":
        settings.TUS_MAX_SIZE = 1000
    length = 1001 if limit == "max_size" else 10 * MiB + 1
    response = create(api, length=length, metadata="filename " + base64.b64encode(b"big.bin").decode(),
                      body=b"x" * 1000)  # creation-with-upload: the first bytes come along
    assert response.status_code == 413
    body = response.json()
    assert body["error"] == ("too_large" if limit == "max_size" else "quota_exceeded")
    assert not Upload.objects.exists()
    assert User.objects.get(pk=dora.pk).reserved_bytes == 0
    assert files_under(media_storage().location) == []
    assert files_under(settings.FILE_UPLOAD_TEMP_DIR) == []
