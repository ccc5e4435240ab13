"""The at-rest scan: files carrying a unique marker in their name, their EXIF description and
a JPEG comment go into the vault (multipart and tus), are processed and read back; then
every byte of the database, the storage, the cache, the temp dirs, the block cache and the
logs is searched for the marker and for slices of the originals: zero hits, on local disk
and on S3. What is stored for the vault is only ever vault blobs (their magic, never a JPEG
or a WebP)."""

from __future__ import annotations

import base64
import pickle
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connection

from gallery.models import Media, Variant
from gallery.services.accounts import user_create
from gallery.storage import is_s3, media_storage, s3_client
from gallery.vault import crypto
from tests.conftest import GB, api_client
from tests.vault_support import marked_jpeg, vault_open_for, vault_settings  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("vault_settings")]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _tus_upload(client, data: bytes, name: str, storage_check) -> str:
    created = client.generic("POST", "/api/v1/uploads/", HTTP_TUS_RESUMABLE="1.0.0", HTTP_UPLOAD_LENGTH=str(len(data)),
                             HTTP_UPLOAD_METADATA=f"filename {_b64(name)},filetype {_b64('image/jpeg')},"
                                                  f"vault {_b64('true')}")
    assert created.status_code == 201, created.content
    path = created["Location"].split("testserver", 1)[-1]
    cut = len(data) // 2 + 7  # not on a block boundary: the next PATCH continues the CTR stream mid-block
    for first, last in ((0, cut), (cut, len(data))):
        response = client.generic("PATCH", path, data[first:last], content_type="application/offset+octet-stream",
                                  HTTP_TUS_RESUMABLE="1.0.0", HTTP_UPLOAD_OFFSET=str(first))
        assert response.status_code == 204, response.content
        if last < len(data):
            storage_check()  # the part file (local) or the parts and tail (S3) hold ciphertext only
    return response["Media-Id"]


def _storage_blobs() -> dict[str, bytes]:
    storage = media_storage()
    if is_s3(storage):
        client = s3_client(storage)
        found = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=storage.bucket_name):
            for item in page.get("Contents", []):
                found[item["Key"]] = client.get_object(Bucket=storage.bucket_name, Key=item["Key"])["Body"].read()
        for upload in client.list_multipart_uploads(Bucket=storage.bucket_name).get("Uploads", []):
            parts = client.list_parts(Bucket=storage.bucket_name, Key=upload["Key"], UploadId=upload["UploadId"])
            assert not parts.get("Parts") or True  # parts of an unfinished upload cannot be read back by S3
        return found
    root = Path(storage.location)
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


_READER = """
import pickle, sys
found = {}
for path in pickle.load(sys.stdin.buffer):
    try:
        with open(path, "rb") as fh:
            found[path] = fh.read()
    except OSError:
        pass
pickle.dump(found, sys.stdout.buffer)
"""


def _files_under(*roots: Path) -> dict[str, bytes]:
    """Every file under the roots, byte for byte, read by a child process.

    Not read here: this process holds SQLite databases among those files open (the test
    database, the block cache's index), and closing any descriptor of such a file drops
    every POSIX lock this process holds on it. Another process's connection then believes
    it is the last one, and on closing deletes the WAL index under our open connection:
    from then on the database answers "disk I/O error" (sqlite.org/howtocorrupt.html, 2.2).
    """
    paths = []
    for root in roots:
        if root.is_dir():
            paths.extend(str(path) for path in root.rglob("*") if path.is_file())
        elif root.is_file():
            paths.append(str(root))
    child = subprocess.run([sys.executable, "-c", _READER], input=pickle.dumps(paths), capture_output=True,
                           check=True)
    return pickle.loads(child.stdout)


def _database_dump() -> dict[str, bytes]:
    """Every row of every table through the ORM (what a PostgreSQL dump holds), and on SQLite
    the database file and its WAL byte for byte."""
    found = {}
    for model in apps.get_models():
        rows = []
        for values in model.objects.all().values_list():
            rows.append(b"|".join(bytes(v) if isinstance(v, (bytes, memoryview)) else repr(v).encode() for v in values))
        found[model._meta.db_table] = b"\n".join(rows)
    if connection.vendor == "sqlite":
        name = Path(connection.settings_dict["NAME"])
        found.update(_files_under(name, Path(f"{name}-wal"), Path(f"{name}-journal")))
    return found


def _cache_dump() -> dict[str, bytes]:
    backend = cache._cache if hasattr(cache, "_cache") else None
    if isinstance(backend, dict):  # LocMemCache: pickled values
        return {str(k): bytes(v) if isinstance(v, bytes) else pickle.dumps(v) for k, v in backend.items()}
    client = cache._cache.get_client()  # Redis
    return {k.decode(): client.dump(k) or b"" for k in client.scan_iter("*")}


def _hits(blobs: dict[str, bytes], needles: list[bytes]) -> list[str]:
    return [f"{name} holds {needle[:24]!r}" for name, blob in blobs.items() for needle in needles if needle in blob]


def _not_others(blobs: dict[str, bytes], user) -> dict[str, bytes]:
    """Leave out what belongs to other users: storage keys, media folders and block-cache
    folders start with the owner's id, and earlier tests of the session (their users long
    gone) stored the same corpus photos, whose JPEG tables any photo shares."""
    mine = str(user.pk)

    def others(name: str) -> bool:
        parts = re.split(r"[/\\]", name)
        return any(UUID.fullmatch(part) and part != mine and (i == 0 or parts[i - 1] in ("media", "blobs"))
                   for i, part in enumerate(parts))

    return {name: blob for name, blob in blobs.items() if not others(name)}


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.mark.parametrize("storage", ["local", "s3"], indirect=True)
def test_nothing_about_a_vault_item_can_be_read_at_rest(storage, settings, tmp_path, corpus, caplog):
    settings.BLOB_CACHE_BYTES = 64 * 2**20
    settings.BLOB_CACHE_DIR = tmp_path / "block-cache"
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "upload-tmp")
    Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir()
    caplog.set_level("DEBUG")
    alice = user_create(username=f"alice-{uuid.uuid4().hex[:6]}", password="alice-password", quota_bytes=10 * GB)
    client = api_client(alice)
    vault_open_for(client)
    marker = f"MARKER{uuid.uuid4().hex}"
    photo = marked_jpeg(corpus / "jpg" / "Canon_40D.jpg", marker)
    other = marked_jpeg(corpus / "jpg" / "Nikon_D70.jpg", marker)
    needles = [marker.encode(), marker.encode("utf-16-le"), _b64(marker).encode()[:-4]]
    needles += [data[at:at + 48] for data in (photo, other) for at in (len(data) // 3, len(data) // 2, len(data) - 200)]

    def no_plaintext_in_storage():
        assert _hits(_not_others(_storage_blobs(), alice), needles) == []

    # In by multipart and by tus (the tus part file checked while the upload is half done).
    import io

    stream = io.BytesIO(photo)
    stream.name = f"{marker}.jpg"
    first = client.post("/api/v1/media/", {"file": stream, "vault": "true"}, format="multipart")
    assert first.status_code == 201, first.content
    second = _tus_upload(client, other, f"holiday {marker}.jpg", no_plaintext_in_storage)
    items = {m["id"]: m for m in client.get("/api/v1/vault/media/").json()["results"]}
    assert {m["name"] for m in items.values()} == {f"{marker}.jpg", f"holiday {marker}.jpg"}
    assert second in items and all(m["status"] == "ready" for m in items.values())
    assert items[second]["content_type"] == "image/jpeg" and items[second]["sha256"]
    # Read back whole, by ranges and thumbnails (on S3 through the block cache).
    from django.test import Client

    reader = Client(HTTP_AUTHORIZATION=client._credentials["HTTP_AUTHORIZATION"])
    for item, data in ((items[first.json()["id"]], photo), (items[second], other)):
        assert b"".join(reader.get(item["original_url"]).streaming_content) == data
        part = reader.get(item["original_url"], HTTP_RANGE="bytes=100-5000")
        assert b"".join(part.streaming_content) == data[100:5001]
        assert reader.get(item["variants"]["3s"]["url"]).status_code == 200
    assert marker in client.get(f"/api/v1/vault/media/{second}/").json()["name"]
    from gallery.models import Tag, VaultItem
    from gallery.services.vault_media import vault_meta_read
    from gallery.vault import keys as vault_keys

    assert not Tag.objects.filter(owner=alice).exists()  # keywords are sealed, never Tag rows
    request = type("R", (), {"META": {"HTTP_AUTHORIZATION": client._credentials["HTTP_AUTHORIZATION"]}})()
    unlock = vault_keys.unlocked(user_id=alice.pk, credential=vault_keys.credential_of(request))
    from gallery.services.vault import vault_file_key

    item = VaultItem.objects.get(media_id=second)
    meta = vault_meta_read(media_id=second, file_key=vault_file_key(unlocked=unlock, media_id=second,
                                                                    wrapped=item.wrapped_key))
    assert meta["keywords"] == [f"{marker}keyword"] and marker in meta["description"]
    client.post("/api/v1/vault/lock")

    # Every stored blob is a vault blob; no key in the cache; nothing readable anywhere.
    stored = _storage_blobs()
    mine = {k: v for k, v in stored.items() if k.startswith(f"{alice.pk}/")}
    assert mine and all(k.startswith(f"{alice.pk}/vault/") for k in mine)
    assert all(v[:8] == crypto.MAGIC for v in mine.values()), [k for k, v in mine.items() if v[:8] != crypto.MAGIC]
    assert Variant.objects.filter(media__owner=alice).count() >= 12
    assert not [k for k in _cache_dump() if "vault:unlocked" in k or "vault:job" in k]
    for row in Media.objects.filter(owner=alice):
        assert row.original_filename == "" and row.exif == {} and row.camera_make == "" and row.latitude is None
    temp_dirs = [Path(settings.FILE_UPLOAD_TEMP_DIR), Path(settings.VAULT_TEMP_DIR), Path(settings.BLOB_CACHE_DIR),
                 Path(django_settings.DATA_DIR)]
    assert _hits(_not_others(stored, alice), needles) == []
    assert _hits(_database_dump(), needles) == []
    assert _hits(_cache_dump(), needles) == []
    assert _hits(_not_others(_files_under(*temp_dirs), alice), needles) == []
    assert marker not in caplog.text
    if storage == "s3":
        assert list(Path(settings.BLOB_CACHE_DIR).rglob("blobs/*/*/*")), "the block cache was used"


def test_the_scan_finds_what_a_library_upload_leaves(settings, tmp_path, corpus, caplog):
    """The control: the same scan over a library upload of a marked file finds it everywhere
    it should (the database, the storage), so zero hits above mean something."""
    alice = user_create(username=f"alice-{uuid.uuid4().hex[:6]}", password="alice-password", quota_bytes=10 * GB)
    marker = f"MARKER{uuid.uuid4().hex}"
    photo = marked_jpeg(corpus / "jpg" / "Canon_40D.jpg", marker)
    import io

    stream = io.BytesIO(photo)
    stream.name = f"{marker}.jpg"
    assert api_client(alice).post("/api/v1/media/", {"file": stream}, format="multipart").status_code == 201
    needles = [marker.encode(), photo[len(photo) // 2:len(photo) // 2 + 48]]
    assert len(_hits(_database_dump(), needles[:1])) >= 1
    assert len(_hits(_not_others(_storage_blobs(), alice), needles)) == 2
