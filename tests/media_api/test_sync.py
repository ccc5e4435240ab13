"""GET /api/v1/sync/: the caller's changes since a cursor, for phones.

Most tests make media rows directly and report them with media_changed (what every write
path does) so pages of hundreds cost little; the write paths' own hooks are tested through
the real upload, processing, token rotation and delete. The PostgreSQL test at the end runs
writers and a reader on separate connections at once.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from gallery.models import Media, MediaChange, SyncClock, Variant
from gallery.services.changes import changes_page, changes_prune, media_changed
from gallery.services.media import media_delete
from tests.conftest import api_client, unavailable


def make_media(owner, n: int, *, report: bool = True) -> list[Media]:
    rows = Media.objects.bulk_create([
        Media(owner=owner, original_filename=f"p{i}.jpg", content_type="image/jpeg", kind=Media.Kind.IMAGE,
              sha256=uuid.uuid4().hex * 2, status=Media.Status.READY, size=100)
        for i in range(n)])
    if report:
        media_changed(owner_id=owner.pk, media_ids=[m.pk for m in rows])
    return rows


def sync_all(client: APIClient, cursor: str | None = None, page_size: int = 500) -> tuple[list, list, str]:
    """Follow the cursor until has_more is false: (upserted ids, deleted ids, last cursor)."""
    upserted, deleted = [], []
    while True:
        query = f"?page_size={page_size}" + (f"&cursor={cursor}" if cursor is not None else "")
        response = client.get("/api/v1/sync/" + query)
        assert response.status_code == 200, response.content
        body = response.json()
        upserted += [m["id"] for m in body["upserted"]]
        deleted += body["deleted"]
        cursor = body["cursor"]
        if not body["has_more"]:
            return upserted, deleted, cursor


def test_first_sync_lists_everything_in_pages(alice, alice_api, charlie_api):
    media = make_media(alice, 7)
    first = alice_api.get("/api/v1/sync/?page_size=3").json()
    assert first["has_more"] is True and len(first["upserted"]) == 3 and first["deleted"] == []
    assert set(first["upserted"][0]) >= {"id", "status", "variants", "original_url", "taken_at"}
    upserted, deleted, cursor = sync_all(alice_api, page_size=3)
    assert upserted == [str(m.pk) for m in media] and deleted == []
    # Nothing new: an empty page with the same cursor.
    assert alice_api.get(f"/api/v1/sync/?cursor={cursor}").json() == {
        "upserted": [], "deleted": [], "cursor": cursor, "has_more": False}
    assert charlie_api.get("/api/v1/sync/").json() == {"upserted": [], "deleted": [], "cursor": "0",
                                                       "has_more": False}


def test_changes_after_the_cursor_come_once_each_latest_state(alice, alice_api):
    a, b, c = make_media(alice, 3)
    _, _, cursor = sync_all(alice_api)
    Media.objects.filter(pk=a.pk).update(original_filename="renamed.jpg")
    media_changed(owner_id=alice.pk, media_ids=[a.pk])
    Media.objects.filter(pk=b.pk).update(trashed_at=timezone.now())  # trashed: deleted for sync
    media_changed(owner_id=alice.pk, media_ids=[b.pk])
    Media.objects.filter(pk=c.pk).update(in_vault=True)  # into the vault: deleted for sync
    media_changed(owner_id=alice.pk, media_ids=[c.pk])
    media_changed(owner_id=alice.pk, media_ids=[a.pk])  # twice: still one entry
    body = alice_api.get(f"/api/v1/sync/?cursor={cursor}").json()
    assert [m["id"] for m in body["upserted"]] == [str(a.pk)] and body["upserted"][0]["name"] == "renamed.jpg"
    assert sorted(body["deleted"]) == sorted([str(b.pk), str(c.pk)])
    cursor = body["cursor"]
    Media.objects.filter(pk=b.pk).update(trashed_at=None)  # restored
    media_changed(owner_id=alice.pk, media_ids=[b.pk])
    assert [m["id"] for m in alice_api.get(f"/api/v1/sync/?cursor={cursor}").json()["upserted"]] == [str(b.pk)]


def test_the_write_paths_report_their_changes(alice, alice_api, upload, corpus, django_capture_on_commit_callbacks):
    _, _, cursor = sync_all(alice_api)
    media_id = upload(alice_api, corpus / "jpg" / "Canon_40D.jpg").json()["id"]  # created, then processed
    body = alice_api.get(f"/api/v1/sync/?cursor={cursor}").json()
    assert [m["id"] for m in body["upserted"]] == [media_id] and body["upserted"][0]["status"] == "ready"
    cursor = body["cursor"]
    old_url = body["upserted"][0]["original_url"]
    assert alice_api.post(f"/api/v1/media/{media_id}/rotate-token/").status_code == 200
    body = alice_api.get(f"/api/v1/sync/?cursor={cursor}").json()
    assert body["upserted"][0]["original_url"] != old_url
    cursor = body["cursor"]
    with django_capture_on_commit_callbacks(execute=True):
        media_delete(media=Media.objects.get(pk=media_id))
    assert alice_api.get(f"/api/v1/sync/?cursor={cursor}").json()["deleted"] == [media_id]
    assert MediaChange.objects.get(media_id=media_id).deleted is True


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", "１２", "9" * 30, "0x10"])
def test_bad_cursors_are_400(alice_api, cursor):
    response = alice_api.get("/api/v1/sync/", {"cursor": cursor})
    assert response.status_code == 400 and response.json()["error"] == "invalid"


@pytest.mark.parametrize("size", ["0", "1001", "x", "-5"])
def test_bad_page_sizes_are_400(alice_api, size):
    assert alice_api.get("/api/v1/sync/", {"page_size": size}).status_code == 400


def test_a_cursor_never_handed_out_or_older_than_the_tombstones_is_410(alice, alice_api):
    a, b, c = make_media(alice, 3)
    assert alice_api.get("/api/v1/sync/?cursor=99").status_code == 410
    _, _, old_cursor = sync_all(alice_api)
    Media.objects.filter(pk=b.pk).delete()
    media_changed(owner_id=alice.pk, media_ids=[b.pk], deleted=True)
    _, _, recent_cursor = sync_all(alice_api, old_cursor)
    media_changed(owner_id=alice.pk, media_ids=[c.pk])  # a live change after the tombstone
    # Not old enough yet: nothing pruned.
    assert changes_prune() == 0
    later = timezone.now() + timedelta(days=91)
    assert changes_prune(now=later) == 1
    assert not MediaChange.objects.filter(media_id=b.pk).exists()
    assert MediaChange.objects.filter(media_id__in=[a.pk, c.pk]).count() == 2  # live rows stay
    response = alice_api.get(f"/api/v1/sync/?cursor={old_cursor}")
    assert response.status_code == 410 and response.json()["error"] == "full_sync_required"
    # A cursor past the pruned tombstone is fine, and so is starting over.
    assert [m["id"] for m in alice_api.get(f"/api/v1/sync/?cursor={recent_cursor}").json()["upserted"]] == [
        str(c.pk)]
    assert sorted(sync_all(alice_api)[0]) == sorted([str(a.pk), str(c.pk)])


def test_a_page_is_a_constant_number_of_queries(alice, alice_api):
    make_media(alice, 2)
    alice_api.get("/api/v1/sync/")  # the key's first use records last_used_at
    with CaptureQueriesContext(connection) as small:
        assert len(alice_api.get("/api/v1/sync/").json()["upserted"]) == 2
    more = make_media(alice, 60)
    Variant.objects.bulk_create([Variant(media=m, level=level, width=1, height=1, size=1, content_type="image/webp",
                                         storage_key=f"k/{m.pk}/{level}") for m in more for level in ("3s", "6")])
    with CaptureQueriesContext(connection) as large:
        assert len(alice_api.get("/api/v1/sync/").json()["upserted"]) == 62
    assert len(small) == len(large), [q["sql"] for q in large.captured_queries]


def test_read_scope_is_enough_and_anonymous_is_401(alice):
    make_media(alice, 1)
    assert len(api_client(alice, scopes=["media.read"]).get("/api/v1/sync/").json()["upserted"]) == 1
    assert APIClient().get("/api/v1/sync/").status_code == 401


def test_numbers_are_per_owner_and_dense(alice, bob):
    make_media(alice, 3)
    make_media(bob, 2)
    assert SyncClock.objects.get(owner=alice).seq == 3 and SyncClock.objects.get(owner=bob).seq == 2
    assert sorted(MediaChange.objects.filter(owner=alice).values_list("seq", flat=True)) == [1, 2, 3]


# --- Concurrent writers on PostgreSQL ----------------------------------------------------------
def _postgres_only() -> None:
    if connection.vendor != "postgresql":
        unavailable("the concurrency test needs PostgreSQL (DATABASE_URL=postgres://...)")


@pytest.mark.django_db(transaction=True)
def test_a_slow_writer_is_never_skipped_by_a_reader(alice):
    """A writer takes its number and stays in its transaction; a second writer of the same
    owner must not commit a higher number before it, and a reader polling meanwhile must get
    both changes."""
    _postgres_only()
    slow, fast = make_media(alice, 2, report=False)
    took_number, release = threading.Event(), threading.Event()
    committed: list[str] = []

    def slow_writer():
        try:
            with transaction.atomic():
                media_changed(owner_id=alice.pk, media_ids=[slow.pk])
                took_number.set()
                release.wait(10)
            committed.append("slow")
        finally:
            connection.close()

    def fast_writer():
        try:
            took_number.wait(10)
            with transaction.atomic():
                media_changed(owner_id=alice.pk, media_ids=[fast.pk])
            committed.append("fast")
        finally:
            connection.close()

    threads = [threading.Thread(target=slow_writer), threading.Thread(target=fast_writer)]
    for thread in threads:
        thread.start()
    took_number.wait(10)
    time.sleep(0.3)  # the fast writer is now waiting for the slow one's number to commit
    page = changes_page(user=alice, after=0, limit=100)
    assert page.upserted == [] and page.cursor == 0  # neither is visible yet: the cursor stays
    assert committed == []
    release.set()
    for thread in threads:
        thread.join(10)
    # Both committed. Which thread appended first after the slow commit is the scheduler's
    # choice (the fast writer goes on the moment the lock is free); the order that matters
    # is the numbers', checked below.
    assert sorted(committed) == ["fast", "slow"]
    page = changes_page(user=alice, after=page.cursor, limit=100)
    assert [m.pk for m in page.upserted] == [slow.pk, fast.pk]
    numbers = dict(MediaChange.objects.values_list("media_id", "seq"))
    assert numbers[slow.pk] < numbers[fast.pk]


@pytest.mark.django_db(transaction=True)
def test_a_reader_following_concurrent_writers_sees_every_change(alice):
    """Four writers commit changes with random pauses inside their transactions while a reader
    follows the cursor without pause; at the end the reader has seen every media."""
    _postgres_only()
    media = make_media(alice, 120, report=False)
    batches = [media[i::4] for i in range(4)]
    seen: set[uuid.UUID] = set()
    done = threading.Event()
    errors: list[BaseException] = []

    def writer(batch, seed):
        rng = random.Random(seed)
        try:
            for item in batch:
                with transaction.atomic():
                    Media.objects.filter(pk=item.pk).update(updated_at=timezone.now())
                    time.sleep(rng.random() * 0.004)
                    media_changed(owner_id=alice.pk, media_ids=[item.pk])
                    time.sleep(rng.random() * 0.004)  # holds its number a while before committing
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    def reader():
        cursor = 0
        try:
            while True:
                finished = done.is_set()
                page = changes_page(user=alice, after=cursor, limit=7)
                seen.update(m.pk for m in page.upserted)
                cursor = page.cursor
                if finished and not page.has_more:
                    return
                close_old_connections()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    writers = [threading.Thread(target=writer, args=(batch, i)) for i, batch in enumerate(batches)]
    read = threading.Thread(target=reader)
    read.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(60)
    done.set()
    read.join(60)
    assert errors == []
    assert seen == {m.pk for m in media}


def test_fuzzed_query_parameters_are_never_a_server_error(alice, alice_api):
    from hypothesis import given

    from tests.test_fuzz import assert_not_5xx, digits, fuzzing, junk

    make_media(alice, 3)

    @fuzzing(150)
    @given(cursor=digits | junk, page_size=digits | junk)
    def fuzz(cursor, page_size):
        assert_not_5xx(alice_api.get("/api/v1/sync/", {"cursor": cursor, "page_size": page_size}))

    fuzz()


def test_metadata_writes_report_their_changes(alice, alice_api):
    from gallery.models import Album
    from gallery.services.metadata import media_add_to_albums, media_tags_from_metadata

    a, b = make_media(alice, 2)
    _, _, cursor = sync_all(alice_api)
    media_add_to_albums(media=a, albums=[Album.objects.create(owner=alice, title="Import")])
    media_tags_from_metadata(media=b, names=["sea"])
    media_tags_from_metadata(media=a, names=[])  # nothing new: nothing to report
    body = alice_api.get(f"/api/v1/sync/?cursor={cursor}").json()
    assert [m["id"] for m in body["upserted"]] == [str(a.pk), str(b.pk)]
