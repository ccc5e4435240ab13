"""tus concatenation (partial and final uploads) through a live server, on local disk and S3."""

from __future__ import annotations

import hashlib
import itertools
import os
import random
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import botocore.client
import pytest
import requests
from django.core.management import call_command
from django.utils import timezone

from gallery.exceptions import StorageUnavailable
from gallery.models import Album, Media, Upload
from gallery.services.accounts import user_create
from gallery.storage import media_storage
from gallery.uploads import tus, tus_storage
from tests.conftest import use_storage
from tests.media_api.conftest import key_for
from tests.media_api.test_tus import MiB, create, headers, meta, patch, s3_leftovers, stored_bytes

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def small_parts(settings):
    settings.TUS_S3_PART_SIZE = 5 * MiB


@pytest.fixture
def s3(settings, moto_server) -> str:
    """S3 (moto) only, for what only S3 does."""
    use_storage(settings, moto_server.storage_config(moto_server.new_bucket()))
    return "s3"


@pytest.fixture
def s3_calls(monkeypatch):
    """Every S3 operation made, as (name, Key) (a spy: the real call still happens)."""
    calls: list[tuple[str, str | None]] = []
    original = botocore.client.BaseClient._make_api_call

    def spy(self, operation_name, api_params):
        calls.append((operation_name, api_params.get("Key")))
        return original(self, operation_name, api_params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", spy)
    return calls


def partial(endpoint: str, key: str, length: int, **extra: str) -> requests.Response:
    return create(endpoint, key, length, filename="piece.bin", **{"Upload-Concat": "partial", **extra})


def upload_partial(endpoint: str, key: str, data: bytes) -> str:
    """A finished partial upload of `data`, sent in two PATCHes; returns its URL."""
    created = partial(endpoint, key, len(data))
    assert created.status_code == 201
    url = created.headers["Location"]
    half = len(data) // 2
    assert patch(url, key, 0, data[:half]).status_code == 204
    done = patch(url, key, half, data[half:])
    assert done.status_code == 204 and done.headers["Upload-Offset"] == str(len(data))
    assert "Media-Id" not in done.headers  # a partial makes no media
    return url


def final(endpoint: str, key: str, urls: list[str], filename: str = "whole.bin", **extra: str) -> requests.Response:
    return requests.post(endpoint, headers=headers(key, **{
        "Upload-Concat": "final;" + " ".join(urls), "Upload-Metadata": meta(filename=filename), **extra}))


def path_of(url: str) -> str:
    return urlsplit(url).path


def upload_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[1]


def no_upload_blobs_left(storage: str, owner) -> bool:
    if storage == "s3":
        return s3_leftovers(owner) == ([], [])
    folder = Path(media_storage().path(f"{owner.pk}/library/uploads"))
    return not folder.exists() or not list(folder.iterdir())


def make_old(upload_url: str) -> None:
    Upload.objects.filter(pk=upload_id(upload_url)).update(expires_at=timezone.now() - timedelta(minutes=1))


# --- Discovery ---------------------------------------------------------------------------
def test_options_advertises_concatenation(endpoint):
    assert "concatenation" in requests.options(endpoint).headers["Tus-Extension"].split(",")


# --- The whole flow ----------------------------------------------------------------------
def test_parallel_partials_in_any_order_then_a_final_make_the_whole_file(storage, small_parts, endpoint, alice,
                                                                          alice_key, s3_calls):
    data = os.urandom(3 * MiB + 777)
    cuts = [0, 1_000_000, 1_000_001, 2 * MiB + 5, len(data)]  # a one-byte piece too
    pieces = [data[a:b] for a, b in itertools.pairwise(cuts)]
    urls = [partial(endpoint, alice_key, len(piece)).headers["Location"] for piece in pieces]
    alice.refresh_from_db()
    assert alice.reserved_bytes == len(data) and alice.used_bytes == 0
    # The partials in a shuffled order, four at a time, each in two PATCHes.
    order = list(range(len(pieces)))
    random.Random(7).shuffle(order)

    def send(index: int) -> list[int]:
        url, piece = urls[index], pieces[index]
        half = len(piece) // 2
        return [patch(url, alice_key, 0, piece[:half]).status_code,
                patch(url, alice_key, half, piece[half:]).status_code]

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(send, order)) == [[204, 204]] * len(pieces)
    assert not Media.objects.exists()  # finished partials are no media
    for url in urls:
        head = requests.head(url, headers=headers(alice_key))
        assert head.headers["Upload-Concat"] == "partial" and head.headers["Upload-Offset"] == head.headers["Upload-Length"]
    album = Album.objects.create(owner=alice, title="Pieces")
    s3_calls.clear()
    # Absolute URLs and path URLs mixed, as the protocol allows.
    done = final(endpoint, alice_key, [urls[0], path_of(urls[1]), urls[2], path_of(urls[3])],
                 **{"Upload-Metadata": meta(filename="whole.bin", album=str(album.pk))})
    assert done.status_code == 201, done.content
    names = [name for name, _ in s3_calls]
    read = [key for name, key in s3_calls if name == "GetObject"]
    assert done.headers["Upload-Offset"] == done.headers["Upload-Length"] == str(len(data))
    media = Media.objects.get(pk=done.headers["Media-Id"], owner=alice)
    assert stored_bytes(media) == data
    assert media.sha256 == hashlib.sha256(data).hexdigest() and media.size == len(data)
    assert media.original_filename == "whole.bin" and list(album.media.all()) == [media]
    if storage == "s3":  # small partials: the bytes pass through (each read once, hashed on the way)
        assert "UploadPartCopy" not in names
        assert sorted(key for key in read if "/library/uploads/" in key) == sorted(
            Upload.objects.get(pk=upload_id(url)).target_key for url in urls)
    alice.refresh_from_db()
    assert alice.used_bytes == len(data) and alice.reserved_bytes == 0
    assert no_upload_blobs_left(storage, alice)

    head = requests.head(done.headers["Location"], headers=headers(alice_key))
    assert head.status_code == 200 and head.headers["Media-Id"] == str(media.pk)
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(len(data))
    assert head.headers["Upload-Concat"] == "final;" + " ".join(urls)
    assert requests.head(urls[0], headers=headers(alice_key)).headers["Upload-Concat"] == "partial"
    # The partials are used up: a second final cannot take them again.
    again = final(endpoint, alice_key, urls)
    assert again.status_code == 400 and again.json()["error"] == "partial_not_found"
    assert Media.objects.count() == 1


def test_s3_partials_of_5_mib_or_more_are_copied_by_s3(s3, small_parts, endpoint, alice, alice_key, s3_calls):
    data = os.urandom(11 * MiB + 3)
    cuts = [0, 5 * MiB, 10 * MiB + 1, len(data)]  # the last one may be smaller than 5 MiB
    urls = [upload_partial(endpoint, alice_key, data[a:b]) for a, b in itertools.pairwise(cuts)]
    s3_calls.clear()
    done = final(endpoint, alice_key, urls)
    assert done.status_code == 201
    names, read = [name for name, _ in s3_calls], [key for name, key in s3_calls if name == "GetObject"]
    assert names.count("UploadPartCopy") == 3 and "UploadPart" not in names and "PutObject" not in names
    media = Media.objects.get(pk=done.headers["Media-Id"])
    # No byte of the partials came through us; the result was read (for its SHA-256), not them.
    assert media.original_key in read and not [key for key in read if "/library/uploads/" in key]
    assert stored_bytes(media) == data and media.sha256 == hashlib.sha256(data).hexdigest()
    alice.refresh_from_db()
    assert alice.used_bytes == len(data) and alice.reserved_bytes == 0
    assert no_upload_blobs_left(s3, alice)


def test_s3_a_single_partial_is_one_copy_object(s3, endpoint, alice, alice_key, s3_calls):
    data = os.urandom(300_000)
    url = upload_partial(endpoint, alice_key, data)
    s3_calls.clear()
    done = final(endpoint, alice_key, [url], filename="one.txt", **{"Upload-Metadata": meta(
        filename="one.txt", filetype="text/plain")})
    names = [name for name, _ in s3_calls]
    assert names.count("CopyObject") == 1 and "UploadPartCopy" not in names and "CreateMultipartUpload" not in names
    media = Media.objects.get(pk=done.headers["Media-Id"])
    assert stored_bytes(media) == data and media.sha256 == hashlib.sha256(data).hexdigest()
    store = media_storage()
    head = store.connection.meta.client.head_object(Bucket=store.bucket_name, Key=media.original_key)
    assert head["ContentType"] == "text/plain"
    assert no_upload_blobs_left(s3, alice)


def test_small_partials_larger_than_a_part_stream_through_in_parts(storage, small_parts, endpoint, alice,
                                                                   alice_key, s3_calls):
    # 3 + 3 + 1 MiB: not copyable (a 3 MiB part is too small), but bigger than one 5 MiB part.
    data = os.urandom(7 * MiB)
    urls = [upload_partial(endpoint, alice_key, data[i * 3 * MiB:(i + 1) * 3 * MiB]) for i in range(3)]
    s3_calls.clear()
    done = final(endpoint, alice_key, urls)
    names = [name for name, _ in s3_calls]
    media = Media.objects.get(pk=done.headers["Media-Id"])
    assert stored_bytes(media) == data and media.sha256 == hashlib.sha256(data).hexdigest()
    if storage == "s3":
        assert names.count("UploadPart") == 2 and "UploadPartCopy" not in names
    assert no_upload_blobs_left(storage, alice)


def test_empty_partials_make_an_empty_or_unchanged_file(storage, endpoint, alice_key):
    empty = partial(endpoint, alice_key, 0)
    assert empty.status_code == 201 and "Media-Id" not in empty.headers
    some = upload_partial(endpoint, alice_key, b"hello")
    done = final(endpoint, alice_key, [empty.headers["Location"], some])
    assert stored_bytes(Media.objects.get(pk=done.headers["Media-Id"])) == b"hello"
    nothing = final(endpoint, alice_key, [partial(endpoint, alice_key, 0).headers["Location"]], filename="e.txt")
    media = Media.objects.get(pk=nothing.headers["Media-Id"])
    assert media.size == 0 and stored_bytes(media) == b"" and media.sha256 == hashlib.sha256(b"").hexdigest()


# --- What a final upload refuses ----------------------------------------------------------
def test_a_partial_of_another_user_or_unknown_is_refused_and_nothing_is_made(storage, endpoint, alice, alice_key,
                                                                              charlie):
    charlie_key = key_for(charlie)
    theirs = upload_partial(endpoint, charlie_key, b"charlie's bytes")
    mine = upload_partial(endpoint, alice_key, b"alice's bytes")
    host = urlsplit(mine).netloc
    for urls in ([mine, theirs], [path_of(theirs)], [mine.replace(upload_id(mine), "0" * 32)],
                 [mine.replace(upload_id(mine), "not-a-uuid")], ["/api/v1/media/"],
                 [mine.replace(host, "elsewhere.example")]):
        refused = final(endpoint, alice_key, urls)
        assert refused.status_code == 400, urls
        assert refused.json()["error"] == "partial_not_found" and refused.headers["Tus-Resumable"] == "1.0.0"
    assert not Media.objects.exists()
    assert Upload.objects.filter(concat=Upload.Concat.FINAL).count() == 0
    assert set(Upload.objects.values_list("state", flat=True)) == {Upload.State.ACTIVE}
    alice.refresh_from_db()
    charlie.refresh_from_db()
    assert (alice.reserved_bytes, alice.used_bytes) == (len(b"alice's bytes"), 0)
    assert (charlie.reserved_bytes, charlie.used_bytes) == (len(b"charlie's bytes"), 0)
    # Charlie's partial still serves him.
    done = final(endpoint, charlie_key, [theirs])
    assert stored_bytes(Media.objects.get(pk=done.headers["Media-Id"], owner=charlie)) == b"charlie's bytes"


def test_an_unfinished_partial_is_400_until_it_is_finished(storage, endpoint, alice, alice_key):
    url = partial(endpoint, alice_key, 10).headers["Location"]
    assert patch(url, alice_key, 0, b"01234").status_code == 204
    refused = final(endpoint, alice_key, [url])
    assert refused.status_code == 400
    body = refused.json()
    assert body["error"] == "partial_incomplete" and (body["offset"], body["length"]) == (5, 10)
    assert Upload.objects.get(pk=upload_id(url)).state == Upload.State.ACTIVE and not Media.objects.exists()
    assert patch(url, alice_key, 5, b"56789").status_code == 204
    done = final(endpoint, alice_key, [url])
    assert done.status_code == 201
    assert stored_bytes(Media.objects.get(pk=done.headers["Media-Id"])) == b"0123456789"
    alice.refresh_from_db()
    assert (alice.used_bytes, alice.reserved_bytes) == (10, 0)


def test_malformed_finals_are_400_and_patch_on_a_final_is_403(endpoint, alice_key):
    first, second = upload_partial(endpoint, alice_key, b"abc"), upload_partial(endpoint, alice_key, b"def")
    plain = create(endpoint, alice_key, 3).headers["Location"]
    for urls, extra in (([first, second], {"Upload-Length": "6"}), ([first, first], {}), ([], {}),
                        ([first, plain], {})):
        refused = final(endpoint, alice_key, urls, **extra)
        assert refused.status_code == 400, (urls, extra)
        assert refused.json()["error"] == "invalid"
    with_body = requests.post(endpoint, data=b"xyz", headers=headers(alice_key, **{
        "Upload-Concat": f"final;{first}", "Content-Type": "application/offset+octet-stream"}))
    assert with_body.status_code == 400
    assert partial(endpoint, alice_key, 3, **{"Upload-Length": ""}).status_code == 400  # a partial needs its length
    done = final(endpoint, alice_key, [first, second])
    assert done.status_code == 201
    url = done.headers["Location"]
    for offset in (6, 0):
        forbidden = patch(url, alice_key, offset, b"more")
        assert forbidden.status_code == 403 and forbidden.json()["error"] == "final_upload_read_only"
    assert stored_bytes(Media.objects.get(pk=done.headers["Media-Id"])) == b"abcdef"


# --- Quota, expiry, dedup ----------------------------------------------------------------
def test_reservations_move_to_the_final_and_are_released_exactly_once(storage, endpoint, db):
    dora = user_create(username="dora", password="dora-password", quota_bytes=1000)
    key = key_for(dora)
    data = os.urandom(1000)
    urls = [upload_partial(endpoint, key, data[:600]), upload_partial(endpoint, key, data[600:])]
    refused = create(endpoint, key, 1)  # the partials hold the whole quota
    assert refused.status_code == 413 and refused.json()["reserved"] == 1000
    done = final(endpoint, key, urls)
    assert done.status_code == 201
    dora.refresh_from_db()
    assert (dora.used_bytes, dora.reserved_bytes) == (1000, 0)
    # Nothing that touches the finished uploads again counts anything twice.
    for url in [done.headers["Location"], *urls]:
        assert requests.head(url, headers=headers(key)).status_code == 200
    for url in [done.headers["Location"], *urls]:
        make_old(url)
    call_command("cleanup_uploads")
    for url in [done.headers["Location"], *urls]:
        assert requests.delete(url, headers=headers(key)).status_code == 204
    dora.refresh_from_db()
    assert (dora.used_bytes, dora.reserved_bytes) == (1000, 0)
    assert create(endpoint, key, 1).status_code == 413
    assert stored_bytes(Media.objects.get(pk=done.headers["Media-Id"])) == data


def test_unused_finished_partials_expire_through_cleanup(storage, small_parts, endpoint, alice, alice_key):
    finished = upload_partial(endpoint, alice_key, os.urandom(6 * MiB))  # on S3: a completed multipart upload
    unfinished = partial(endpoint, alice_key, 6 * MiB).headers["Location"]
    assert patch(unfinished, alice_key, 0, os.urandom(MiB)).status_code == 204
    kept = upload_partial(endpoint, alice_key, b"still wanted")
    alice.refresh_from_db()
    assert alice.reserved_bytes == 12 * MiB + len(b"still wanted")
    make_old(finished)
    make_old(unfinished)

    call_command("cleanup_uploads")

    for url in (finished, unfinished):
        assert Upload.objects.get(pk=upload_id(url)).state == Upload.State.EXPIRED
        assert requests.head(url, headers=headers(alice_key)).status_code == 410
    alice.refresh_from_db()
    assert alice.reserved_bytes == len(b"still wanted") and alice.used_bytes == 0
    call_command("cleanup_uploads")  # a second run releases nothing more
    alice.refresh_from_db()
    assert alice.reserved_bytes == len(b"still wanted")
    expired = final(endpoint, alice_key, [finished, kept])
    assert expired.status_code == 400 and expired.json()["error"] == "partial_not_found"
    done = final(endpoint, alice_key, [kept])
    assert stored_bytes(Media.objects.get(pk=done.headers["Media-Id"])) == b"still wanted"
    assert no_upload_blobs_left(storage, alice)


def test_a_finished_partial_past_its_expiry_answers_410(endpoint, alice, alice_key):
    url = upload_partial(endpoint, alice_key, b"late")
    make_old(url)
    assert requests.head(url, headers=headers(alice_key)).status_code == 410
    alice.refresh_from_db()
    assert alice.reserved_bytes == 0
    assert not media_storage().exists(Upload.objects.get(pk=upload_id(url)).part_key)


def test_a_concatenated_file_alice_has_resolves_to_her_media(storage, endpoint, alice, alice_key):
    data = os.urandom(200_000)
    first = patch(create(endpoint, alice_key, len(data)).headers["Location"], alice_key, 0, data)
    urls = [upload_partial(endpoint, alice_key, data[:50_000]), upload_partial(endpoint, alice_key, data[50_000:])]
    done = final(endpoint, alice_key, urls, filename="again.bin")
    assert done.status_code == 201 and done.headers["Media-Id"] == first.headers["Media-Id"]
    assert Media.objects.filter(owner=alice).count() == 1
    alice.refresh_from_db()
    assert (alice.used_bytes, alice.reserved_bytes) == (len(data), 0)
    final_row = Upload.objects.get(concat=Upload.Concat.FINAL)
    assert not media_storage().exists(final_row.target_key)  # the duplicate's bytes are gone
    assert no_upload_blobs_left(storage, alice)


def test_a_final_whose_assembly_failed_is_finished_by_head(storage, endpoint, alice, alice_key, monkeypatch):
    data = b"first half|second half"
    urls = [upload_partial(endpoint, alice_key, data[:11]), upload_partial(endpoint, alice_key, data[11:])]

    def broken(row, lease):
        raise StorageUnavailable("the storage went away")

    monkeypatch.setattr(tus, "concat_assemble", broken)
    created = final(endpoint, alice_key, urls)
    assert created.status_code == 201 and "Media-Id" not in created.headers
    assert created.headers["Upload-Offset"] == str(len(data))
    alice.refresh_from_db()
    assert (alice.used_bytes, alice.reserved_bytes) == (0, len(data))
    monkeypatch.undo()
    head = requests.head(created.headers["Location"], headers=headers(alice_key))
    assert head.status_code == 200 and "Media-Id" in head.headers
    assert stored_bytes(Media.objects.get(pk=head.headers["Media-Id"])) == data
    alice.refresh_from_db()
    assert (alice.used_bytes, alice.reserved_bytes) == (len(data), 0)
    assert no_upload_blobs_left(storage, alice)


def test_terminating_a_pending_final_releases_the_sum_and_deletes_the_partials(storage, endpoint, alice, alice_key,
                                                                                monkeypatch):
    urls = [upload_partial(endpoint, alice_key, b"abc"), upload_partial(endpoint, alice_key, b"defg")]
    monkeypatch.setattr(tus, "concat_assemble", lambda row, lease: (_ for _ in ()).throw(StorageUnavailable("x")))
    created = final(endpoint, alice_key, urls)
    monkeypatch.undo()
    assert requests.delete(created.headers["Location"], headers=headers(alice_key)).status_code == 204
    alice.refresh_from_db()
    assert (alice.used_bytes, alice.reserved_bytes) == (0, 0)
    assert not Media.objects.exists() and no_upload_blobs_left(storage, alice)


def test_s3_partials_larger_than_a_copied_part_are_copied_in_ranges(s3, small_parts, endpoint, alice, alice_key,
                                                                    s3_calls, monkeypatch):
    # (S3 copies at most 5 GiB per part: the same code path, with a limit small enough to test.)
    monkeypatch.setattr(tus_storage, "S3_MAX_COPY_PART", 6 * MiB)
    data = os.urandom(11 * MiB)
    single = upload_partial(endpoint, alice_key, data[:10 * MiB])
    s3_calls.clear()
    alone = final(endpoint, alice_key, [single], filename="alone.bin")
    names = [name for name, _ in s3_calls]
    assert "CopyObject" not in names and names.count("UploadPartCopy") == 2  # 10 MiB as 2 x 5 MiB
    assert stored_bytes(Media.objects.get(pk=alone.headers["Media-Id"])) == data[:10 * MiB]

    urls = [upload_partial(endpoint, alice_key, data[MiB:]), upload_partial(endpoint, alice_key, data[:MiB])]
    s3_calls.clear()
    done = final(endpoint, alice_key, urls)
    assert [name for name, _ in s3_calls].count("UploadPartCopy") == 3
    media = Media.objects.get(pk=done.headers["Media-Id"])
    assert stored_bytes(media) == data[MiB:] + data[:MiB]
    assert media.sha256 == hashlib.sha256(data[MiB:] + data[:MiB]).hexdigest()
    assert no_upload_blobs_left(s3, alice)


def test_cleanup_keeps_the_bytes_of_partials_and_of_a_pending_final_then_finishes_it(storage, endpoint, alice,
                                                                                     alice_key, monkeypatch, settings):
    from gallery.uploads.cleanup import uploads_cleanup

    waiting = upload_partial(endpoint, alice_key, b"a partial nobody took yet")
    urls = [upload_partial(endpoint, alice_key, b"taken "), upload_partial(endpoint, alice_key, b"by a final")]
    monkeypatch.setattr(tus, "concat_assemble", lambda row, lease: (_ for _ in ()).throw(StorageUnavailable("x")))
    pending = final(endpoint, alice_key, urls).headers["Location"]
    monkeypatch.undo()
    far = timezone.now() + timedelta(days=30)
    Upload.objects.filter(pk__in=[upload_id(waiting), upload_id(pending)]).update(expires_at=far)
    later = timezone.now() + timedelta(hours=settings.UPLOAD_EXPIRY_HOURS + 1)
    # Old enough to be swept if no row knew of them: the live partial's bytes, and those of
    # the partials the pending final took (they are no longer active themselves).
    report = uploads_cleanup(now=later)
    assert report.orphans == 0 and report.expired == 0 and report.completed == 0
    Upload.objects.filter(pk=upload_id(pending)).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert uploads_cleanup().completed == 1
    media = Media.objects.get(pk=Upload.objects.get(pk=upload_id(pending)).media_id)
    assert stored_bytes(media) == b"taken by a final"
    done = final(endpoint, alice_key, [waiting])
    assert stored_bytes(Media.objects.get(pk=done.headers["Media-Id"])) == b"a partial nobody took yet"
    alice.refresh_from_db()
    assert (alice.used_bytes, alice.reserved_bytes) == (len(b"taken by a final" + b"a partial nobody took yet"), 0)
    assert no_upload_blobs_left(storage, alice)
