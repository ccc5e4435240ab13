"""cleanup_uploads: abandoned uploads go (bytes, multipart uploads, reservations), live ones stay."""

from __future__ import annotations

import hashlib
import io
import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from gallery import jobs
from gallery.models import Media, Upload
from gallery.storage import media_storage
from gallery.uploads import tus
from gallery.uploads.cleanup import uploads_cleanup
from gallery.uploads.direct import direct_upload_create

pytestmark = pytest.mark.django_db(transaction=True)

MiB = 2**20


@pytest.fixture(autouse=True)
def small_parts(settings):
    settings.TUS_S3_PART_SIZE = 5 * MiB
    settings.DIRECT_UPLOAD_PART_SIZE = 5 * MiB


def started(owner, sent: int, length: int = 8 * MiB) -> Upload:
    """A tus upload with `sent` bytes received (on S3 past 5 MiB: a part and a staged tail)."""
    upload = tus.upload_create(owner=owner, length=length, filename="clip.mp4").upload
    if sent:
        tus.upload_append(upload=upload, offset=0, stream=io.BytesIO(os.urandom(sent)), declared_length=sent)
    upload.refresh_from_db()
    return upload


def s3_state():
    store = media_storage()
    client = store.connection.meta.client
    open_ids = {u["UploadId"] for u in client.list_multipart_uploads(Bucket=store.bucket_name).get("Uploads", [])}
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=store.bucket_name).get("Contents", [])}
    return open_ids, keys


def stored(upload: Upload) -> bool:
    if upload.part_key:
        return media_storage().exists(upload.part_key)
    open_ids, keys = s3_state()
    return upload.s3_upload_id in open_ids and (not upload.tail_key or upload.tail_key in keys)


def make_old(upload: Upload) -> None:
    Upload.objects.filter(pk=upload.pk).update(expires_at=timezone.now() - timedelta(minutes=1))


def test_abandoned_uploads_go_live_ones_stay(storage, alice):
    abandoned, live, writing = started(alice, 6 * MiB), started(alice, 6 * MiB), started(alice, 6 * MiB)
    assert all(stored(u) for u in (abandoned, live, writing))
    if storage == "s3":
        assert abandoned.s3_upload_id and abandoned.tail_size == MiB
    make_old(abandoned)
    make_old(writing)  # past its expiry, but a PATCH holds its lease right now
    Upload.objects.filter(pk=writing.pk).update(lease_token="x", lease_until=timezone.now() + timedelta(minutes=1))
    alice.refresh_from_db()
    assert alice.reserved_bytes == 3 * 8 * MiB

    call_command("cleanup_uploads")

    abandoned.refresh_from_db()
    assert abandoned.state == Upload.State.EXPIRED and not stored(abandoned)
    if storage == "s3":
        assert abandoned.tail_key not in s3_state()[1]
    for upload in (live, writing):
        before = upload.offset
        upload.refresh_from_db()
        assert upload.state == Upload.State.ACTIVE and upload.offset == before and stored(upload)
    alice.refresh_from_db()
    assert alice.reserved_bytes == 2 * 8 * MiB and alice.used_bytes == 0
    # The live upload still finishes.
    tus.upload_append(upload=live, offset=live.offset, stream=io.BytesIO(os.urandom(2 * MiB)))
    assert Upload.objects.get(pk=live.pk).state == Upload.State.COMPLETED


def test_an_upload_whose_bytes_all_arrived_is_finished_not_thrown_away(storage, alice, monkeypatch):
    data = os.urandom(300_000)
    upload = tus.upload_create(owner=alice, length=len(data), filename="done.bin").upload

    def crash(**kwargs):
        raise RuntimeError("the process died here")

    monkeypatch.setattr(tus, "_complete", crash)
    with pytest.raises(RuntimeError):
        tus.upload_append(upload=upload, offset=0, stream=io.BytesIO(data))
    monkeypatch.undo()
    upload.refresh_from_db()
    assert upload.state == Upload.State.ACTIVE and upload.offset == len(data) and not upload.lease_token
    tus.running_hashes.drop(upload.pk)  # a new process: the running hash is gone too
    make_old(upload)

    report = uploads_cleanup()

    assert report.completed == 1 and report.expired == 0
    upload.refresh_from_db()
    assert upload.state == Upload.State.COMPLETED
    media = Media.objects.get(pk=upload.media_id)
    assert media.sha256 == hashlib.sha256(data).hexdigest()
    with media_storage().open(media.original_key, "rb") as fh:
        assert fh.read() == data
    alice.refresh_from_db()
    assert alice.used_bytes == len(data) and alice.reserved_bytes == 0


def test_expired_direct_uploads_are_aborted(settings, moto_server, alice):
    from tests.conftest import use_storage

    use_storage(settings, moto_server.storage_config(moto_server.new_bucket()))
    plan = direct_upload_create(owner=alice, filename="v.mp4", size=6 * MiB, content_type="video/mp4",
                                sha256="0" * 64)
    assert plan.upload.s3_upload_id in s3_state()[0]
    make_old(plan.upload)
    assert uploads_cleanup().expired == 1
    assert plan.upload.s3_upload_id not in s3_state()[0]
    alice.refresh_from_db()
    assert alice.reserved_bytes == 0
    assert Upload.objects.get().state == Upload.State.EXPIRED


def test_orphan_blobs_no_row_knows_are_swept_after_the_expiry(storage, alice, settings):
    live = started(alice, 6 * MiB)
    Upload.objects.filter(pk=live.pk).update(expires_at=timezone.now() + timedelta(days=30))
    store = media_storage()
    if storage == "s3":
        client, bucket = store.connection.meta.client, store.bucket_name
        orphan_tail = f"{alice.pk}/library/uploads/{live.pk}x/tail-old"
        client.put_object(Bucket=bucket, Key=orphan_tail, Body=b"stale")
    else:
        orphan = Path(store.path(f"{alice.pk}/library/uploads/ghost.part"))
        orphan.write_bytes(b"stale")
    assert uploads_cleanup().orphans == 0  # too young: it may belong to a request in flight
    if storage == "s3":
        # (After the check above: moto dates every multipart upload 2010, so it is old at once.)
        orphan_id = client.create_multipart_upload(Bucket=bucket, Key=f"{alice.pk}/library/originals/x.bin")["UploadId"]
    later = timezone.now() + timedelta(hours=settings.UPLOAD_EXPIRY_HOURS + 1)
    report = uploads_cleanup(now=later)
    assert report.orphans >= 1 and report.expired == 0
    assert stored(live)
    if storage == "s3":
        open_ids, keys = s3_state()
        assert orphan_id not in open_ids and orphan_tail not in keys
    else:
        assert not orphan.exists()


def test_finished_rows_are_forgotten_after_a_week(alice):
    upload = started(alice, 0, length=3)
    tus.upload_append(upload=upload, offset=0, stream=io.BytesIO(b"abc"))
    Upload.objects.filter(pk=upload.pk).update(updated_at=timezone.now() - timedelta(days=8))
    assert uploads_cleanup().rows_deleted == 1
    assert not Upload.objects.exists() and Media.objects.filter(owner=alice).count() == 1


def test_the_worker_runs_the_cleanup_periodically():
    spec = next(p for p in jobs._PERIODIC if p.name == "uploads_cleanup")
    assert spec.every_seconds <= 3600
