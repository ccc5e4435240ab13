"""The vault's API: set-up, unlock, lock, passphrases, throttling, auto-lock, items, uploads,
moves, and the one visibility rule for vault items."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.test import Client

from gallery.models import Job, KindUsage, Media, User, Variant, VaultItem
from gallery.storage import media_storage
from gallery.vault import jobkeys, keys
from tests.conftest import api_client
from tests.vault_support import PASSPHRASE, cache_keys, marked_jpeg, vault_open_for, vault_settings, vault_upload  # noqa: F401

pytestmark = pytest.mark.usefixtures("vault_settings")


def _stored_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_setup_once_with_a_long_enough_passphrase(alice_api):
    assert alice_api.get("/api/v1/vault/").json() == {"exists": False, "unlocked": False, "unlocked_until": None,
                                                      "count": 0, "bytes": 0}
    short = alice_api.post("/api/v1/vault/setup", {"passphrase": "too short"}, format="json")
    assert short.status_code == 400 and short.json()["error"] == "invalid"
    created = alice_api.post("/api/v1/vault/setup", {"passphrase": PASSPHRASE}, format="json")
    assert created.status_code == 201 and len(created.json()["recovery_key"].replace("-", "")) == 52
    again = alice_api.post("/api/v1/vault/setup", {"passphrase": PASSPHRASE}, format="json")
    assert again.status_code == 409 and again.json()["error"] == "vault_exists"
    status = alice_api.get("/api/v1/vault/").json()
    assert status["exists"] is True and status["unlocked"] is False
    # Only wrapped keys and KDF parameters are stored.
    keyring = User.objects.get(username="alice").vault_keyring
    assert keyring.memory_kib == 1024 and len(bytes(keyring.by_passphrase)) == 12 + 32 + 16


def test_unlock_wrong_right_recovery_and_lock(alice_api):
    recovery = alice_api.post("/api/v1/vault/setup", {"passphrase": PASSPHRASE}, format="json").json()["recovery_key"]
    wrong = alice_api.post("/api/v1/vault/unlock", {"passphrase": PASSPHRASE + "!"}, format="json")
    assert wrong.status_code == 403 and wrong.json()["error"] == "wrong_passphrase"
    ok = alice_api.post("/api/v1/vault/unlock", {"passphrase": PASSPHRASE}, format="json")
    assert ok.status_code == 200 and ok.json()["unlocked_until"]
    assert alice_api.get("/api/v1/vault/").json()["unlocked"] is True
    assert alice_api.post("/api/v1/vault/lock").status_code == 204
    assert alice_api.get("/api/v1/vault/").json()["unlocked"] is False
    assert alice_api.get("/api/v1/vault/media/").status_code == 423
    by_recovery = alice_api.post("/api/v1/vault/unlock", {"recovery_key": recovery.lower()}, format="json")
    assert by_recovery.status_code == 200
    assert alice_api.get("/api/v1/vault/media/").status_code == 200


def test_the_unlock_belongs_to_the_credential_that_unlocked(alice, alice_api):
    vault_open_for(alice_api)
    other_key = api_client(alice)
    assert other_key.get("/api/v1/vault/").json()["unlocked"] is False
    assert other_key.get("/api/v1/vault/media/").json()["error"] == "vault_locked"
    browser = Client()
    browser.force_login(alice)
    assert browser.get("/api/v1/vault/").json()["unlocked"] is False
    # A session unlocks with its own HttpOnly cookie; without the cookie it is locked again.
    response = browser.post("/api/v1/vault/unlock", {"passphrase": PASSPHRASE}, content_type="application/json")
    assert response.status_code == 200
    cookie = response.cookies[keys.COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert browser.get("/api/v1/vault/").json()["unlocked"] is True
    stolen_session = Client()
    stolen_session.cookies["sessionid"] = browser.cookies["sessionid"].value
    assert stolen_session.get("/api/v1/vault/").json()["unlocked"] is False
    assert browser.post("/api/v1/vault/lock").status_code == 204
    assert browser.get("/api/v1/vault/").json()["unlocked"] is False
    # Locking one credential leaves the others as they were.
    assert alice_api.get("/api/v1/vault/").json()["unlocked"] is True


def test_logout_locks_the_session(alice):
    browser = Client()
    browser.force_login(alice)
    vault_open_for(_JsonClient(browser))
    assert browser.get("/api/v1/vault/").json()["unlocked"] is True
    cookie = browser.cookies[keys.COOKIE].value
    browser.post("/logout/")
    assert not any(":vault:unlocked:" in k for k in cache_keys())
    browser.force_login(alice)
    browser.cookies[keys.COOKIE] = cookie
    assert browser.get("/api/v1/vault/").json()["unlocked"] is False


class _JsonClient:
    def __init__(self, client: Client) -> None:
        self.client = client

    def post(self, path, data, format="json"):
        return self.client.post(path, data, content_type="application/json")


def test_more_than_five_failures_a_minute_is_429_with_retry_after(alice_api, bob_api, monkeypatch):
    from gallery import throttle

    monkeypatch.setattr(throttle, "now", lambda: 1_000_040.0)
    alice_api.post("/api/v1/vault/setup", {"passphrase": PASSPHRASE}, format="json")
    bob_api.post("/api/v1/vault/setup", {"passphrase": PASSPHRASE}, format="json")
    for _ in range(5):
        assert alice_api.post("/api/v1/vault/unlock", {"passphrase": "wrong wrong wrong"},
                              format="json").status_code == 403
    refused = alice_api.post("/api/v1/vault/unlock", {"passphrase": PASSPHRASE}, format="json")
    assert refused.status_code == 429 and int(refused["Retry-After"]) == 40
    assert refused.json()["error"] == "throttled"
    change = alice_api.post("/api/v1/vault/passphrase", {"old": PASSPHRASE, "new": "another passphrase"},
                            format="json")
    assert change.status_code == 429
    # Per user: bob is not held up by alice's failures.
    assert bob_api.post("/api/v1/vault/unlock", {"passphrase": PASSPHRASE}, format="json").status_code == 200
    monkeypatch.setattr(throttle, "now", lambda: 1_000_081.0)
    assert alice_api.post("/api/v1/vault/unlock", {"passphrase": PASSPHRASE}, format="json").status_code == 200


def test_auto_lock_after_the_idle_minutes(alice_api, monkeypatch, settings):
    settings.VAULT_IDLE_MINUTES = 15
    clock = [1_000_000.0]
    monkeypatch.setattr(keys, "now", lambda: clock[0])
    vault_open_for(alice_api)
    clock[0] += 14 * 60
    assert alice_api.get("/api/v1/vault/media/").status_code == 200  # use renews the deadline
    clock[0] += 14 * 60
    status = alice_api.get("/api/v1/vault/").json()
    deadline = datetime.fromtimestamp(1_000_000 + 14 * 60 + 15 * 60, tz=UTC).isoformat()
    assert status["unlocked"] is True and status["unlocked_until"] == deadline
    clock[0] += 30  # asking for the status did not renew it
    assert alice_api.get("/api/v1/vault/").json()["unlocked"] is True
    clock[0] += 60
    assert alice_api.get("/api/v1/vault/").json()["unlocked"] is False
    assert alice_api.get("/api/v1/vault/media/").status_code == 423
    assert alice_api.post("/api/v1/vault/unlock", {"passphrase": PASSPHRASE}, format="json").status_code == 200


def test_passphrase_change_rewraps_one_key_and_no_blob(alice_api, corpus, django_capture_on_commit_callbacks,
                                                       settings):
    recovery = vault_open_for(alice_api)
    response = vault_upload(alice_api, (corpus / "jpg" / "Canon_40D.jpg").read_bytes(), "a.jpg",
                            django_capture_on_commit_callbacks)
    assert response.status_code == 201, response.content
    root = Path(media_storage().location)
    before = _stored_files(root)
    item_before = VaultItem.objects.values_list("wrapped_key", "sealed").get()
    assert alice_api.post("/api/v1/vault/passphrase", {"old": "wrong one here", "new": "a new passphrase"},
                          format="json").status_code == 403
    assert alice_api.post("/api/v1/vault/passphrase", {"old": PASSPHRASE, "new": "short"},
                          format="json").status_code == 400
    assert alice_api.post("/api/v1/vault/passphrase", {"old": PASSPHRASE, "new": "a new passphrase"},
                          format="json").status_code == 204
    assert alice_api.post("/api/v1/vault/passphrase", {"recovery_key": recovery, "new": "a third passphrase"},
                          format="json").status_code == 204
    assert _stored_files(root) == before
    assert [tuple(map(bytes, row)) for row in VaultItem.objects.values_list("wrapped_key", "sealed")] == [
        tuple(map(bytes, item_before))]
    alice_api.post("/api/v1/vault/lock")
    for old in (PASSPHRASE, "a new passphrase"):
        assert alice_api.post("/api/v1/vault/unlock", {"passphrase": old}, format="json").status_code == 403
    assert alice_api.post("/api/v1/vault/unlock", {"passphrase": "a third passphrase"},
                          format="json").status_code == 200
    assert alice_api.get("/api/v1/vault/media/").json()["results"][0]["name"] == "a.jpg"


def test_upload_into_the_vault_and_read_it_back(alice, alice_api, charlie_api, corpus,
                                                django_capture_on_commit_callbacks, settings):
    data = (corpus / "jpg" / "Canon_40D.jpg").read_bytes()
    locked = vault_upload(alice_api, data, "secret.jpg", django_capture_on_commit_callbacks)
    assert locked.status_code == 404 and locked.json()["error"] == "vault_not_set_up"
    vault_open_for(alice_api)
    alice_api.post("/api/v1/vault/lock")
    refused = vault_upload(alice_api, data, "secret.jpg", django_capture_on_commit_callbacks)
    assert refused.status_code == 423 and refused.json()["error"] == "vault_locked"
    alice_api.post("/api/v1/vault/unlock", {"passphrase": PASSPHRASE}, format="json")
    response = vault_upload(alice_api, data, "secret.jpg", django_capture_on_commit_callbacks)
    assert response.status_code == 201, response.content
    item = response.json()
    assert item["name"] == "secret.jpg" and item["content_type"] == "image/jpeg"
    media = Media.objects.get(pk=item["id"])
    # The row keeps an opaque id, owner, sizes and state; processing finished without a key at rest.
    assert media.in_vault and media.status == Media.Status.READY and media.original_filename == ""
    assert media.camera_make == "" and media.exif == {} and media.width is None and media.sha256 != item["sha256"]
    assert media.original_key.startswith(f"{alice.pk}/vault/originals/") and "secret" not in media.original_key
    assert Variant.objects.filter(media=media).count() >= 6
    assert not list(Path(settings.VAULT_TEMP_DIR).iterdir())
    job = Job.objects.get(name="process_media", payload__media_id=str(media.pk))
    assert job.state == Job.State.DONE
    assert jobkeys.job_key_open(media_id=media.pk, vault_job=job.payload["vault_job"],
                                vault_key=job.payload["vault_key"]) is None
    # Read back: the API's JSON (decrypted), the original with and without Range, a thumbnail.
    detail = alice_api.get(f"/api/v1/vault/media/{media.pk}/").json()
    assert detail["camera"] == "Canon EOS 40D" and detail["width"] == 100 and detail["sha256"] == item["sha256"]
    key_client = Client(HTTP_AUTHORIZATION=alice_api._credentials["HTTP_AUTHORIZATION"])
    whole = key_client.get(detail["original_url"])
    assert whole.status_code == 200 and b"".join(whole.streaming_content) == data
    assert whole["Cache-Control"] == "private, no-store" and "secret.jpg" in whole["Content-Disposition"]
    part = key_client.get(detail["original_url"], HTTP_RANGE="bytes=1000-2999")
    assert part.status_code == 206 and b"".join(part.streaming_content) == data[1000:3000]
    thumb = key_client.get(detail["variants"]["3s"]["url"])
    assert thumb.status_code == 200 and b"".join(thumb.streaming_content)[:4] == b"RIFF"
    assert detail["variants"]["3s"]["width"] > 0
    # Same bytes again: the same vault item; into the library: a separate media (no dedup across).
    again = vault_upload(alice_api, data, "again.jpg", django_capture_on_commit_callbacks)
    assert again.status_code == 200 and again.json()["id"] == item["id"]
    stream = io.BytesIO(data)
    stream.name = "lib.jpg"
    with django_capture_on_commit_callbacks(execute=True):
        library = alice_api.post("/api/v1/media/", {"file": stream}, format="multipart")
    assert library.status_code == 201 and library.json()["id"] != item["id"]
    # Never in the library's doors.
    assert [m["id"] for m in alice_api.get("/api/v1/media/").json()["results"]] == [library.json()["id"]]
    assert alice_api.get(f"/api/v1/media/{media.pk}/").status_code == 404
    assert alice_api.get(f"/api/v1/media/?sha256={item['sha256']}").json()["results"][0]["id"] != item["id"]
    # Quota: the vault's bytes count, in their own place.
    usage = KindUsage.objects.get(owner=alice, place="vault", kind="image")
    assert (usage.count, usage.bytes) == (1, len(data))
    assert User.objects.get(pk=alice.pk).used_bytes == 2 * len(data)
    status = alice_api.get("/api/v1/vault/").json()
    assert (status["count"], status["bytes"]) == (1, len(data))
    # Strangers and other credentials: 404 on the bytes, nothing in their lists.
    assert charlie_api.get(f"/api/v1/vault/media/{media.pk}/").status_code in (404, 423)
    charlie_key = Client(HTTP_AUTHORIZATION=charlie_api._credentials["HTTP_AUTHORIZATION"])
    assert charlie_key.get(detail["original_url"]).status_code == 404
    assert Client(HTTP_AUTHORIZATION=api_client(alice)._credentials["HTTP_AUTHORIZATION"]).get(
        detail["original_url"]).status_code == 404
    # Locked: 404 for the bytes, 423 for the API.
    alice_api.post("/api/v1/vault/lock")
    assert key_client.get(detail["original_url"]).status_code == 404
    assert key_client.get(detail["variants"]["3s"]["url"], HTTP_RANGE="bytes=0-9").status_code == 404
    assert alice_api.get(f"/api/v1/vault/media/{media.pk}/").status_code == 423


def test_delete_a_vault_item(alice, alice_api, corpus, django_capture_on_commit_callbacks):
    vault_open_for(alice_api)
    data = (corpus / "jpg" / "Canon_40D.jpg").read_bytes()
    media_id = vault_upload(alice_api, data, "x.jpg", django_capture_on_commit_callbacks).json()["id"]
    keys_stored = [Media.objects.get(pk=media_id).original_key,
                   *Variant.objects.filter(media_id=media_id).values_list("storage_key", flat=True)]
    with django_capture_on_commit_callbacks(execute=True):
        assert alice_api.delete(f"/api/v1/vault/media/{media_id}/").status_code == 204
    assert not Media.objects.filter(pk=media_id).exists() and not VaultItem.objects.exists()
    assert not any(media_storage().exists(k) for k in keys_stored)
    assert User.objects.get(pk=alice.pk).used_bytes == 0
    assert KindUsage.objects.get(owner=alice, place="vault").count == 0


def test_tus_into_the_vault_needs_it_unlocked(alice_api):
    import base64

    def meta(**pairs):
        return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())

    def create(**extra):
        return alice_api.generic("POST", "/api/v1/uploads/", HTTP_TUS_RESUMABLE="1.0.0", HTTP_UPLOAD_LENGTH="10",
                                 HTTP_UPLOAD_METADATA=meta(filename="secret.bin", vault="true", **extra))

    assert create().status_code == 404  # no vault
    vault_open_for(alice_api)
    assert create(album="1").status_code == 400
    created = create()
    assert created.status_code == 201
    path = created["Location"].split("testserver", 1)[-1]
    head = alice_api.head(path, HTTP_TUS_RESUMABLE="1.0.0")
    assert head.status_code == 200 and "Upload-Metadata" not in head
    alice_api.post("/api/v1/vault/lock")
    assert create().json()["error"] == "vault_locked"
    patch = alice_api.generic("PATCH", path, b"0123456789", content_type="application/offset+octet-stream",
                              HTTP_TUS_RESUMABLE="1.0.0", HTTP_UPLOAD_OFFSET="0")
    assert patch.status_code == 423 and patch.json()["error"] == "vault_locked"
    from gallery.models import Upload

    upload = Upload.objects.get()
    assert upload.filename in ("", "upload") and "secret" not in str(upload.metadata) and upload.offset == 0
    assert upload.target_key.startswith(f"{upload.owner_id}/vault/uploads/")
    alice_api.post("/api/v1/vault/unlock", {"passphrase": PASSPHRASE}, format="json")
    patch = alice_api.generic("PATCH", path, b"0123456789", content_type="application/offset+octet-stream",
                              HTTP_TUS_RESUMABLE="1.0.0", HTTP_UPLOAD_OFFSET="0")
    assert patch.status_code == 204
    item = alice_api.get(f"/api/v1/vault/media/{patch['Media-Id']}/").json()
    assert item["name"] == "secret.bin" and item["size"] == 10
