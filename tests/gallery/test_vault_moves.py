"""Moving media into the vault and back: bytes, variants and metadata re-encrypted (or
decrypted), old blobs deleted after commit, and nothing lost when a move stops half-way."""

from __future__ import annotations

import pytest
from django.test import Client, RequestFactory

from gallery import jobs
from gallery.models import Album, Job, KindUsage, Media, Variant, VaultItem
from gallery.services import vault_media
from gallery.services.library import album_items_add
from gallery.storage import media_storage
from gallery.vault import blobs, keys
from tests.vault_support import vault_open_for, vault_settings  # noqa: F401

pytestmark = pytest.mark.usefixtures("vault_settings")


def _read(key: str) -> bytes:
    with media_storage().open(key, "rb") as fh:
        return fh.read()


@pytest.fixture
def photo(alice, alice_api, upload, corpus):
    response = upload(alice_api, corpus / "jpg" / "Canon_40D.jpg")
    assert response.status_code == 201
    return Media.objects.prefetch_related("variants").get(pk=response.json()["id"])


def _unlock_of(alice, client) -> keys.Unlocked:
    """The unlock the API client's key holds (what its requests carry)."""
    request = RequestFactory().get("/", HTTP_AUTHORIZATION=client._credentials["HTTP_AUTHORIZATION"])
    request.user = alice
    return keys.unlocked_for(request)


@pytest.mark.parametrize("storage", ["local", "s3"], indirect=True)
def test_move_into_the_vault_and_back(storage, alice, alice_api, photo, django_capture_on_commit_callbacks):
    original = _read(photo.original_key)
    variants = {v.level: (_read(v.storage_key), v.width, v.height) for v in photo.variants.all()}
    old_keys = [photo.original_key, *(v.storage_key for v in photo.variants.all())]
    album = Album.objects.create(owner=alice, title="trip", cover=photo)
    album_items_add(album=album, media_ids=[photo.pk])
    vault_open_for(alice_api)
    with django_capture_on_commit_callbacks(execute=True):
        moved = alice_api.post(f"/api/v1/media/{photo.pk}/move-to-vault")
    assert moved.status_code == 200, moved.content
    body = moved.json()
    assert body["name"] == "Canon_40D.jpg" and body["camera"] == "Canon EOS 40D" and body["sha256"] == photo.sha256
    row = Media.objects.get(pk=photo.pk)
    assert row.in_vault and row.original_filename == "" and row.camera_model == "" and row.sha256 != photo.sha256
    assert row.token != photo.token and row.original_key.startswith(f"{alice.pk}/vault/")
    assert not any(media_storage().exists(k) for k in old_keys)  # deleted after commit
    assert Job.objects.get(name="vault_delete_blobs").state == Job.State.DONE
    assert not album.media.exists() and Album.objects.get(pk=album.pk).cover is None
    assert KindUsage.objects.get(owner=alice, place="vault").count == 1
    assert KindUsage.objects.get(owner=alice, place="library").count == 0
    assert _timeline_count(alice) == 0 and row.taken_day is None and row.description == ""
    assert alice_api.get(f"/api/v1/media/{photo.pk}/").status_code == 404
    key_client = Client(HTTP_AUTHORIZATION=alice_api._credentials["HTTP_AUTHORIZATION"])
    assert b"".join(key_client.get(body["original_url"]).streaming_content) == original
    assert b"".join(key_client.get(body["variants"]["2"]["url"]).streaming_content) == variants["2"][0]
    assert body["variants"]["2"]["width"] == variants["2"][1]
    for variant in Variant.objects.filter(media=row):
        assert variant.width == 0 and variants[variant.level][0] not in _read(variant.storage_key)
    # And back.
    with django_capture_on_commit_callbacks(execute=True):
        back = alice_api.post(f"/api/v1/vault/media/{photo.pk}/move-to-library")
    assert back.status_code == 200, back.content
    row = Media.objects.prefetch_related("variants").get(pk=photo.pk)
    assert not row.in_vault and row.original_filename == "Canon_40D.jpg" and row.sha256 == photo.sha256
    assert row.camera_model == photo.camera_model and row.taken_at == photo.taken_at and row.exif == photo.exif
    assert not VaultItem.objects.exists()
    assert _read(row.original_key) == original
    assert {v.level: (_read(v.storage_key), v.width, v.height) for v in row.variants.all()} == variants
    assert not any(k.startswith(f"{alice.pk}/vault/") for k in _all_keys())
    assert alice_api.get(f"/api/v1/media/{photo.pk}/").status_code == 200
    assert KindUsage.objects.get(owner=alice, place="vault").count == 0
    assert _timeline_count(alice) == 1 and row.taken_day == photo.taken_day is not None


def _timeline_count(user) -> int:
    from django.db.models import Sum

    from gallery.models import TimelineDay

    return TimelineDay.objects.filter(owner=user).aggregate(n=Sum("count"))["n"] or 0


def _all_keys() -> list[str]:
    storage = media_storage()
    found = []

    def walk(prefix):
        dirs, files = storage.listdir(prefix)
        found.extend(f"{prefix}{f}" if not prefix else f"{prefix}/{f}" for f in files)
        for d in dirs:
            walk(f"{prefix}/{d}" if prefix else d)

    walk("")
    return found


def test_a_move_that_stops_half_way_loses_nothing(alice, alice_api, photo, monkeypatch,
                                                 django_capture_on_commit_callbacks):
    vault_open_for(alice_api)
    before = set(_all_keys())
    calls = []
    real = blobs.encrypt_to

    def failing(*args, **kwargs):
        calls.append(args)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(blobs, "encrypt_to", failing)
    unlocked = _unlock_of(alice, alice_api)
    with pytest.raises(OSError):
        vault_media.vault_move_in(media=photo, unlocked=unlocked)
    assert set(_all_keys()) == before  # the encrypted copies made so far are gone, the originals stay
    row = Media.objects.get(pk=photo.pk)
    assert not row.in_vault and row.original_filename == "Canon_40D.jpg" and not VaultItem.objects.exists()
    assert alice_api.get(f"/api/v1/media/{photo.pk}/").status_code == 200
    monkeypatch.setattr(blobs, "encrypt_to", real)

    # Stopping after the commit, before the old blobs are deleted (the delete job fails):
    # the item is in the vault and whole; the old blobs go when the job runs again.
    def broken_delete(keys):
        raise OSError("storage down")

    monkeypatch.setattr(blobs, "delete_blobs", broken_delete)
    with django_capture_on_commit_callbacks(execute=True):
        vault_media.vault_move_in(media=photo, unlocked=unlocked)
    job = Job.objects.get(name="vault_delete_blobs")
    assert job.state == Job.State.FAILED and media_storage().exists(photo.original_key)
    detail = alice_api.get(f"/api/v1/vault/media/{photo.pk}/").json()
    assert detail["name"] == "Canon_40D.jpg"
    key_client = Client(HTTP_AUTHORIZATION=alice_api._credentials["HTTP_AUTHORIZATION"])
    assert b"".join(key_client.get(detail["original_url"]).streaming_content) == _read(photo.original_key)
    monkeypatch.undo()
    Job.objects.filter(pk=job.pk).update(state=Job.State.QUEUED, attempts=0)
    jobs.run_now(job.pk)
    assert not media_storage().exists(photo.original_key)


def test_moves_need_the_unlocked_vault_and_the_owner(alice_api, charlie_api, photo):
    assert alice_api.post(f"/api/v1/media/{photo.pk}/move-to-vault").status_code == 404  # no vault yet
    vault_open_for(alice_api)
    alice_api.post("/api/v1/vault/lock")
    assert alice_api.post(f"/api/v1/media/{photo.pk}/move-to-vault").status_code == 423
    vault_open_for(charlie_api)
    assert charlie_api.post(f"/api/v1/media/{photo.pk}/move-to-vault").status_code == 404
    assert charlie_api.post(f"/api/v1/vault/media/{photo.pk}/move-to-library").status_code == 404
    assert not Media.objects.get(pk=photo.pk).in_vault


def test_a_moved_item_leaves_sync_and_share_links(alice, alice_api, photo, django_capture_on_commit_callbacks):
    """Moving into the vault is a deletion for sync and for a share link; moving back, an upsert."""
    cursor = alice_api.get("/api/v1/sync/").json()["cursor"]
    share = alice_api.post("/api/v1/shares/", {"media": str(photo.pk)}, format="json").json()
    anonymous = Client()
    assert anonymous.get(f"/api/v1/shared/{share['token']}/").status_code == 200
    vault_open_for(alice_api)
    with django_capture_on_commit_callbacks(execute=True):
        assert alice_api.post(f"/api/v1/media/{photo.pk}/move-to-vault").status_code == 200
    body = alice_api.get(f"/api/v1/sync/?cursor={cursor}").json()
    assert body["deleted"] == [str(photo.pk)] and body["upserted"] == []
    shared = anonymous.get(f"/api/v1/shared/{share['token']}/")
    assert str(photo.pk) not in shared.content.decode()
    token = Media.objects.get(pk=photo.pk).token
    assert anonymous.get(f"/s/{share['token']}/m/{token}/0/").status_code == 404
    cursor = body["cursor"]
    with django_capture_on_commit_callbacks(execute=True):
        assert alice_api.post(f"/api/v1/vault/media/{photo.pk}/move-to-library").status_code == 200
    body = alice_api.get(f"/api/v1/sync/?cursor={cursor}").json()
    assert [m["id"] for m in body["upserted"]] == [str(photo.pk)] and body["upserted"][0]["name"] == "Canon_40D.jpg"


@pytest.mark.parametrize("storage", ["local", "s3"], indirect=True)
def test_verify_knows_vault_blobs(storage, alice, alice_api, photo, django_capture_on_commit_callbacks):
    """manage.py verify: a vault item's blobs have their ciphertext's size and no checkable
    SHA-256; a vault item is as clean as a library one."""
    from datetime import timedelta

    from django.utils import timezone

    from gallery.operations.verify import storage_verify

    vault_open_for(alice_api)
    with django_capture_on_commit_callbacks(execute=True):
        assert alice_api.post(f"/api/v1/media/{photo.pk}/move-to-vault").status_code == 200
    later = timezone.now() + timedelta(days=2)
    report = storage_verify(storage=media_storage(), user=alice, checksums=True, now=later)
    assert report.findings == [] and report.objects >= 10
