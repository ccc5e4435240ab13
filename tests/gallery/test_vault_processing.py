"""Processing vault items: variants made from a decrypted copy that lives in VAULT_TEMP_DIR
for the time of the job only, stored encrypted; the job's one-time key is gone once done.
And the default Argon2id parameters, once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import Client

from gallery import jobs
from gallery.models import Job, Media, Variant, VaultKeyring
from gallery.processing import pipeline
from gallery.vault import crypto, jobkeys
from tests.gallery.test_video import make_clip, top_level_order
from tests.vault_support import PASSPHRASE, vault_open_for, vault_settings, vault_upload  # noqa: F401

pytestmark = pytest.mark.usefixtures("vault_settings")


def test_a_vault_video_is_processed_in_memory_and_streams_with_ranges(alice_api, tmp_path, settings, monkeypatch,
                                                                      django_capture_on_commit_callbacks):
    vault_open_for(alice_api)
    clip = make_clip(tmp_path / "clip.mp4", seconds=2.0)
    seen_during_job = []
    real_video = pipeline._video

    def watching(media, path, outcome, workdir):
        real_video(media, path, outcome, workdir)
        seen_during_job.extend(str(p) for p in Path(settings.VAULT_TEMP_DIR).rglob("*") if p.is_file())
        upload_tmp = Path(settings.FILE_UPLOAD_TEMP_DIR)
        seen_during_job.extend(f"upload-tmp:{p}" for p in upload_tmp.rglob("*") if p.is_file())

    monkeypatch.setattr(pipeline, "_video", watching)
    response = vault_upload(alice_api, clip.read_bytes(), "clip.mp4", django_capture_on_commit_callbacks)
    assert response.status_code == 201, response.content
    body = alice_api.get(f"/api/v1/vault/media/{response.json()['id']}/").json()
    assert body["kind"] == "video" and body["status"] == "ready", body["error"]
    assert (body["width"], body["height"]) == (160, 96) and body["duration"] == pytest.approx(2.0, abs=0.2)
    # During the job the plaintext copy and the remux were in VAULT_TEMP_DIR, nowhere else; after it, nothing.
    assert any(p.endswith("original") for p in seen_during_job) and any(p.endswith("play.mp4") for p in seen_during_job)
    assert not [p for p in seen_during_job if p.startswith("upload-tmp:")]
    assert not list(Path(settings.VAULT_TEMP_DIR).rglob("*"))
    client = Client(HTTP_AUTHORIZATION=alice_api._credentials["HTTP_AUTHORIZATION"])
    play = body["variants"]["play"]
    assert play["content_type"] == "video/mp4"
    whole = b"".join(client.get(play["url"]).streaming_content)
    (tmp_path / "play.mp4").write_bytes(whole)
    order = top_level_order(tmp_path / "play.mp4")
    assert order.index(b"moov") < order.index(b"mdat") and len(whole) == play["size"]
    ranged = client.get(play["url"], HTTP_RANGE=f"bytes={len(whole) - 1000}-")
    assert ranged.status_code == 206 and b"".join(ranged.streaming_content) == whole[-1000:]
    stored = Variant.objects.get(media_id=body["id"], level="play")
    assert stored.width == 0 and len(stored.storage_key.split("/")[-1]) == 16


def test_the_job_key_is_gone_when_the_job_is_done_or_failed(alice, alice_api, corpus, monkeypatch,
                                                           django_capture_on_commit_callbacks, settings):
    vault_open_for(alice_api)
    calls = []
    real = pipeline.media_process

    def flaky(*, media_id, file_key=None):
        calls.append(file_key)
        raise OSError("storage down")

    monkeypatch.setattr(pipeline, "media_process", flaky)
    settings.JOB_MAX_ATTEMPTS = 2
    response = vault_upload(alice_api, (corpus / "jpg" / "Canon_40D.jpg").read_bytes(), "a.jpg",
                            django_capture_on_commit_callbacks)
    media = Media.objects.get(pk=response.json()["id"])
    job = Job.objects.get(name="process_media", payload__media_id=str(media.pk))
    # Retried with the same key (the secret stays while attempts are left), then dropped.
    assert job.state == Job.State.FAILED and len(calls) == 2 and calls[0] == calls[1] and len(calls[0]) == 32
    assert media.__class__.objects.get(pk=media.pk).status == Media.Status.FAILED
    assert jobkeys.job_key_open(media_id=media.pk, vault_job=job.payload["vault_job"],
                                vault_key=job.payload["vault_key"]) is None
    # The payload alone is a wrapped key: the database holds no usable key, before or after.
    assert "vault_key" in job.payload and calls[0].hex() not in str(job.payload)
    monkeypatch.setattr(pipeline, "media_process", real)


def test_a_job_whose_key_expired_fails_cleanly(alice_api, corpus, settings, django_capture_on_commit_callbacks):
    settings.JOBS_MODE = "worker"  # queued, not run at commit
    vault_open_for(alice_api)
    response = vault_upload(alice_api, (corpus / "jpg" / "Canon_40D.jpg").read_bytes(), "a.jpg",
                            django_capture_on_commit_callbacks)
    media_id = response.json()["id"]
    job = Job.objects.get(name="process_media", payload__media_id=media_id)
    cache.delete(f"vault:job:{job.payload['vault_job']}")  # as the cache's timeout would
    jobs.run_now(job.pk)
    media = Media.objects.get(pk=media_id)
    assert media.status == Media.Status.FAILED and "expired" in media.error
    assert not Variant.objects.filter(media=media).exists()


def test_the_default_argon2id_parameters(alice_api, settings):
    """Once with the defaults of config/settings.py (128 MiB, 4 passes): unlock works, and takes
    the time the docs say (printed; the machine is shared, so no bound is asserted)."""
    settings.VAULT_ARGON2_MEMORY_KIB, settings.VAULT_ARGON2_TIME_COST, settings.VAULT_ARGON2_PARALLELISM = 131072, 4, 1
    assert alice_api.post("/api/v1/vault/setup", {"passphrase": PASSPHRASE}, format="json").status_code == 201
    keyring = VaultKeyring.objects.get()
    assert (keyring.memory_kib, keyring.time_cost, keyring.parallelism) == (131072, 4, 1)
    started = time.perf_counter()
    assert alice_api.post("/api/v1/vault/unlock", {"passphrase": PASSPHRASE}, format="json").status_code == 200
    print(f"unlock at the default Argon2id parameters: {time.perf_counter() - started:.3f} s")
    kek = crypto.passphrase_kek(PASSPHRASE, bytes(keyring.salt), memory_kib=131072, time_cost=4, parallelism=1)
    assert len(kek) == 32
