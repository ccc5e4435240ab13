"""manage.py migrate_storage: local -> S3 (moto) -> local, and the app serves the same bytes on each."""

from __future__ import annotations

import io

import pytest
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from django.test import Client

from config.settings import local_storage_config
from gallery.models import Media
from gallery.operations.migrate import storage_migrate, target_storage
from gallery.storage import blob_list, media_storage
from tests.conftest import use_storage

pytestmark = pytest.mark.django_db

PHOTOS = ("Canon_40D.jpg", "Nikon_D70.jpg", "Pentax_K10D.jpg")


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def s3_args(moto_server, bucket: str) -> list[str]:
    return ["--s3-endpoint-url", moto_server.endpoint, "--s3-bucket", bucket, "--s3-region", "us-east-1",
            "--s3-access-key-id", moto_server.credentials["access_key"],
            "--s3-secret-access-key", moto_server.credentials["secret_key"]]


def every_url(owner) -> list[str]:
    urls = []
    for media in Media.objects.filter(owner=owner).prefetch_related("variants"):
        urls.append(f"/m/{media.token}/0/")
        urls += [f"/m/{media.token}/{v.level}/" for v in media.variants.all()]
    return sorted(urls)


def served(client: Client, urls: list[str]) -> dict[str, bytes]:
    out = {}
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        out[url] = b"".join(response.streaming_content) if response.streaming else response.content
    return out


@pytest.fixture
def library(alice, alice_api, upload, corpus, settings):
    settings.DELIVERY_MODE = "stream"
    settings.BLOB_CACHE_BYTES = 0
    for name in PHOTOS:
        assert upload(alice_api, corpus / "jpg" / name).status_code == 201
    assert Media.objects.filter(owner=alice, status="ready").count() == len(PHOTOS)
    client = Client()
    client.force_login(alice)
    urls = every_url(alice)
    assert len(urls) == len(PHOTOS) * 11  # the original and ten levels each
    return client, urls, served(client, urls)


def test_local_to_s3_to_local_serves_identical_bytes(library, moto_server, settings, tmp_path):
    client, urls, before = library
    keys = {b.key: b.size for b in blob_list(media_storage())}
    bucket = moto_server.new_bucket()

    out, _ = run("migrate_storage", "--to", "s3", *s3_args(moto_server, bucket))
    assert f"copied {len(keys)} blobs" in out
    assert "STORAGE_BACKEND=s3" in out and f"S3_BUCKET={bucket}" in out
    assert moto_server.credentials["secret_key"] not in out
    out, _ = run("migrate_storage", "--to", "s3", *s3_args(moto_server, bucket))
    assert "copied 0 blobs" in out  # resumable: what was checked is skipped

    use_storage(settings, moto_server.storage_config(bucket))
    assert {b.key: b.size for b in blob_list(media_storage())} == keys
    assert served(client, urls) == before

    back = tmp_path / "second-data-dir"
    out, _ = run("migrate_storage", "--to", "local", "--data-dir", str(back))
    assert f"copied {len(keys)} blobs" in out and f"CHIPMUNK_DATA_DIR={back}" in out
    use_storage(settings, local_storage_config(back / "media"))
    assert {b.key: b.size for b in blob_list(media_storage())} == keys
    assert served(client, urls) == before


def test_rerun_copies_only_what_is_missing_or_changed(library, moto_server):
    bucket = moto_server.new_bucket()
    run("migrate_storage", "--to", "s3", *s3_args(moto_server, bucket))
    s3 = moto_server.client()
    gone = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])[0]
    s3.delete_object(Bucket=bucket, Key=gone)
    out, _ = run("migrate_storage", "--to", "s3", *s3_args(moto_server, bucket))
    assert "copied 1 blobs" in out
    assert s3.head_object(Bucket=bucket, Key=gone)["ContentLength"] > 0


def test_dry_run_writes_nothing(library, moto_server):
    bucket = moto_server.new_bucket()
    out, _ = run("migrate_storage", "--to", "s3", "--dry-run", *s3_args(moto_server, bucket))
    assert "would copy" in out and "33 blobs would be copied" in out
    assert "Contents" not in moto_server.client().list_objects_v2(Bucket=bucket)


def test_uploads_during_the_copy_are_caught_by_a_final_pass(library, tmp_path):
    source = media_storage()
    target = target_storage(local_storage_config(tmp_path / "target"))
    late = []

    def meanwhile(blob):
        if not late:  # a new upload lands while the first pass runs
            late.append(source.save("someone/library/originals/late.jpg", ContentFile(b"late bytes")))

    report = storage_migrate(source=source, target=target, on_blob=meanwhile)
    assert not report.problems and report.copied == 34 and report.passes >= 2
    assert target.open(late[0]).read() == b"late bytes"


def test_a_damaged_original_is_a_problem_and_a_non_zero_exit(library, tmp_path):
    media = Media.objects.first()
    with open(media_storage().path(media.original_key), "r+b") as fh:
        fh.seek(100)
        fh.write(b"\0" * 8)
    with pytest.raises(CommandError) as failed:
        run("migrate_storage", "--to", "local", "--data-dir", str(tmp_path / "elsewhere"))
    assert failed.value.returncode == 1
    assert "not copied or not matching" in str(failed.value)


def test_clear_errors(library, moto_server, settings, tmp_path):
    use_storage(settings, local_storage_config(settings.DATA_DIR / "media"))  # the default data dir's
    with pytest.raises(CommandError, match="itself"):
        run("migrate_storage", "--to", "local")
    with pytest.raises(CommandError, match="create it first"):
        run("migrate_storage", "--to", "s3", *s3_args(moto_server, "no-such-bucket"))
    use_storage(settings, local_storage_config(tmp_path / "data" / "media"))
    with pytest.raises(CommandError, match="one folder holds the other"):
        run("migrate_storage", "--to", "local", "--data-dir", str(tmp_path / "data" / "media" / "inner"))
    settings.S3_ACCESS_KEY_ID = ""
    with pytest.raises(CommandError, match="needs a bucket and keys"):
        run("migrate_storage", "--to", "s3", "--s3-bucket", "b")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_only_and_quiet(library, tmp_path):
    out = Terminal()
    call_command("migrate_storage", "--to", "local", "--data-dir", str(tmp_path / "a"), stdout=out)
    assert "\rcopying [" in out.getvalue() and "33/33" in out.getvalue()
    plain = io.StringIO()
    call_command("migrate_storage", "--to", "local", "--data-dir", str(tmp_path / "b"), stdout=plain)
    assert "\r" not in plain.getvalue() and "copied 33 blobs" in plain.getvalue()
    quiet = Terminal()
    call_command("migrate_storage", "--to", "local", "--data-dir", str(tmp_path / "c"), "--quiet", stdout=quiet)
    assert quiet.getvalue() == ""
