"""manage.py verify: a planted orphan, a deleted object and a corrupted original are found; regenerate fixes variants."""

from __future__ import annotations

import io
import json
import os
import time
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from django.utils import timezone

from gallery.models import Media, Upload, Variant
from gallery.operations.verify import orphans_delete, storage_verify
from gallery.storage import media_storage

pytestmark = pytest.mark.django_db

DAY = 24 * 3600


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def fails(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as failed:
        call_command(*args, stdout=out, stderr=err)
    assert failed.value.returncode == 1
    return out.getvalue(), err.getvalue()


def age(key: str, seconds: int) -> None:
    path = media_storage().path(key)
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.fixture
def photos(alice, alice_api, upload, corpus):
    for name in ("Canon_40D.jpg", "Nikon_D70.jpg"):
        assert upload(alice_api, corpus / "jpg" / name).status_code == 201
    return list(Media.objects.filter(owner=alice).order_by("original_filename"))


def test_a_clean_library_passes(photos):
    out, err = run("verify", "--checksums")
    assert "checked 22 rows and 22 objects, 2 originals hashed" in out and not err


def test_planted_orphan_deleted_object_and_corrupted_original(photos, alice, bob, django_capture_on_commit_callbacks):
    storage = media_storage()
    canon, nikon = photos
    orphan = storage.save(f"{alice.pk}/library/originals/stray.jpg", ContentFile(b"nobody's"))
    age(orphan, 2 * DAY)
    young = storage.save(f"{alice.pk}/library/originals/arriving.jpg", ContentFile(b"an upload's bytes"))
    part = storage.save(f"{alice.pk}/library/uploads/abc.part", ContentFile(b"tus bytes"))
    age(part, 2 * DAY)
    Upload.objects.create(owner=alice, length=100, offset=9, filename="x.jpg", target_key="t", part_key=part,
                          expires_at=timezone.now() + timedelta(hours=1))
    gone = canon.variants.get(level="3s")
    storage.delete(gone.storage_key)
    with open(storage.path(nikon.original_key), "r+b") as fh:  # same size, other bytes
        fh.seek(200)
        fh.write(b"\xff" * 16)
    shrunk = nikon.variants.get(level="1")
    with open(storage.path(shrunk.storage_key), "ab") as fh:
        fh.write(b"more")
    bob_key = storage.save(f"{bob.pk}/library/originals/x.jpg", ContentFile(b"bob"))
    age(bob_key, 2 * DAY)

    out, err = fails("verify", "--user", "alice")
    assert "missing\t" + gone.storage_key in err
    assert "orphan\t" + orphan in err
    assert young not in err and part not in err and bob_key not in err
    assert "size\t" + shrunk.storage_key in err
    assert "checksum" not in err  # only with --checksums
    assert "variants\tCanon_40D.jpg\tready image without level(s) 3s" in err
    assert f"fix: manage.py regenerate --check-blobs --media {canon.pk}" in out

    out, _ = fails("verify", "--checksums", "--json")
    report = json.loads(out)
    assert report["counts"] == {"missing": 1, "orphan": 2, "size": 1, "checksum": 1, "variants": 1}
    assert {f["key"] for f in report["findings"] if f["kind"] == "checksum"} == {nikon.original_key}
    assert {f["key"] for f in report["findings"] if f["kind"] == "orphan"} == {orphan, bob_key}

    # --delete-orphans removes exactly what it reported, nothing young, nothing an upload holds.
    fails("verify", "--delete-orphans")
    assert not storage.exists(orphan) and not storage.exists(bob_key)
    assert storage.exists(young) and storage.exists(part)

    # The regenerate command verify points to makes the missing level again.
    with django_capture_on_commit_callbacks(execute=True):  # processing runs inline
        out, _ = run("regenerate", "--check-blobs", "--media", str(canon.pk))
    assert "forgot 1 variant" in out
    remade = canon.variants.get(level="3s")
    assert remade.storage_key != gone.storage_key and storage.exists(remade.storage_key)
    _, err = fails("verify", "--user", "alice")
    assert "variants\t" not in err and "missing\t" not in err


def test_orphans_of_a_deleted_user(alice, tmp_path):
    storage = media_storage()
    key = storage.save("5b0d8a56-1a3f-4a43-8d3e-2f0e7f7b0c11/library/originals/a.jpg", ContentFile(b"left"))
    age(key, 2 * DAY)
    _, err = fails("verify")
    assert "orphan\t" + key in err and "no user has this folder" in err


def test_verify_on_s3(storage, photos, alice):
    """The same checks against S3 (moto): objects there cannot be aged, so the clock is moved."""
    media = media_storage()
    canon = photos[0]
    orphan = media.save(f"{alice.pk}/library/variants/{canon.pk}/stray.webp", ContentFile(b"x"))
    variant = Variant.objects.filter(media=canon).first()
    media.delete(variant.storage_key)
    now = timezone.now()
    assert [f.kind for f in storage_verify(storage=media, now=now).findings] == ["missing", "variants"]
    later = storage_verify(storage=media, now=now + timedelta(days=2), checksums=True)
    assert sorted(f.kind for f in later.findings) == ["missing", "orphan", "variants"]
    assert later.hashed == 2
    assert orphans_delete(storage=media, findings=later.findings) == 1
    assert not media.exists(orphan)


def test_unknown_user_is_a_clear_error(db):
    with pytest.raises(CommandError, match="no user named"):
        run("verify", "--user", "nobody")
