"""The index follows every change through the job queue (the worker's claim and execute)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import transaction
from django.utils import timezone

from gallery import jobs
from gallery import signals as gallery_signals
from gallery.models import Album, Job, Media, Tag
from gallery.services.library import album_items_add, favourites_for
from gallery.services.media import media_delete
from search import indexing
from search.db import DatabaseBackend
from search.models import SearchEntry
from tests.search.conftest import make_media

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def queued(settings):
    settings.JOBS_MODE = "queue"
    settings.SEARCH_BACKEND = "db"


def drain() -> int:
    """Run every due job like the worker does; returns how many ran."""
    ran = 0
    while (row := jobs.claim(queues=["default"], worker="test")) is not None:
        jobs.execute(row)
        ran += 1
    return ran


def entry(media) -> SearchEntry | None:
    return SearchEntry.objects.filter(media_id=media.pk).first()


def search_words(media) -> set[str]:
    return set(entry(media).words.split())


def test_follows_every_change(queued, alice):
    media = make_media(alice, "IMG_0001.jpg", datetime(2019, 7, 4, 12, tzinfo=UTC))
    assert entry(media) is None  # nothing until the worker runs the job
    assert drain() == 1
    assert entry(media).name == "img_0001.jpg"

    # Processing (a queryset .update() in gallery) sends gallery.signals.media_changed.
    Media.objects.filter(pk=media.pk).update(place_city="Lisbon", place_country="Portugal")
    with transaction.atomic():
        gallery_signals.media_changed.send(sender=Media, media_ids=[media.pk])
    drain()
    assert entry(media).city == "Lisbon" and "lisbon" in search_words(media)

    media.refresh_from_db()
    media.camera_make, media.camera_model = "Fujifilm", "X100V"  # an edit saves the model
    media.save()
    drain()
    assert entry(media).camera == "Fujifilm X100V"

    tag = Tag.objects.create(owner=alice, name="tram")
    media.tags.add(tag)
    drain()
    assert list(entry(media).tags.values_list("name", flat=True)) == ["tram"]
    tag.name = "streetcar"  # a renamed tag renames it in every document
    tag.save()
    drain()
    assert list(entry(media).tags.values_list("name", flat=True)) == ["streetcar"]
    tag.media.clear()
    drain()
    assert not entry(media).tags.exists()

    album = Album.objects.create(owner=alice, title="Portugal trip")
    album_items_add(album=album, media_ids=[media.pk])
    drain()
    assert list(entry(media).albums.values_list("album_id", flat=True)) == [album.pk]
    assert "trip" in search_words(media)
    album.title = "Lisbon 2019"
    album.save()
    drain()
    assert "trip" not in search_words(media)
    album.delete()
    drain()
    assert not entry(media).albums.exists()

    album_items_add(album=favourites_for(user=alice), media_ids=[media.pk])
    drain()
    assert entry(media).favourite is True

    media.trashed_at = timezone.now()  # trashed: out of the index
    media.save()
    drain()
    assert entry(media) is None
    media.trashed_at = None  # restored: back in
    media.save()
    drain()
    assert entry(media) is not None
    media.in_vault = True  # moved to the vault: out, id and all
    media.save()
    drain()
    assert entry(media) is None
    media.in_vault = False
    media.save()
    drain()
    media_delete(media=media)
    drain()
    assert not SearchEntry.objects.exists()


def test_one_job_per_transaction(queued, alice):
    with transaction.atomic():
        made = [make_media(alice, f"IMG_{i}.jpg", datetime(2019, 7, 4, 12, tzinfo=UTC)) for i in range(5)]
        tag = Tag.objects.create(owner=alice, name="batch")
        tag.media.add(*made)
    assert Job.objects.filter(name=indexing.INDEX_JOB).count() == 1
    assert sorted(Job.objects.get(name=indexing.INDEX_JOB).payload["media_ids"]) == sorted(str(m.pk) for m in made)
    drain()
    assert SearchEntry.objects.count() == 5


def test_a_rolled_back_change_queues_nothing(queued, alice):
    with pytest.raises(RuntimeError), transaction.atomic():
        make_media(alice, "IMG_1.jpg", datetime(2019, 7, 4, 12, tzinfo=UTC))
        raise RuntimeError("rolled back")
    assert not Job.objects.filter(name=indexing.INDEX_JOB).exists()


def test_time_zone_change_moves_local_dates(queued, alice):
    # 23:30 UTC on 31 December: 2009 in Paris (alice's zone), still 2008 in New York.
    media = make_media(alice, "scan.pdf", datetime(2008, 12, 31, 23, 30, tzinfo=UTC))
    drain()
    assert entry(media).year == 2009
    alice.last_login = timezone.now()  # a login saves the user: nothing to reindex
    alice.save(update_fields=["last_login"])
    assert not Job.objects.filter(name=indexing.REINDEX_USER_JOB).exists()
    alice.time_zone = "America/New_York"
    alice.save()
    drain()
    assert entry(media).year == 2008 and entry(media).month == 12


def test_a_down_backend_never_fails_the_change_and_is_retried(queued, alice, monkeypatch, settings):
    settings.JOB_RETRY_BASE_SECONDS = 0
    calls = []

    def broken(self, documents):
        calls.append(1)
        raise ConnectionError("search is down")

    monkeypatch.setattr(DatabaseBackend, "index", broken)
    media = make_media(alice, "IMG_2.jpg", datetime(2019, 7, 4, 12, tzinfo=UTC))  # the change itself succeeds
    drain()
    assert len(calls) == settings.JOB_MAX_ATTEMPTS
    failed = Job.objects.get(name=indexing.INDEX_JOB, state=Job.State.FAILED)
    assert "search is down" in failed.last_error
    again = Job.objects.get(name=indexing.INDEX_JOB, state=Job.State.QUEUED)  # queued again for later
    assert again.run_after > timezone.now()
    assert indexing.lag()["pending_jobs"] == 1 and indexing.lag()["failed_jobs"] == 1
    monkeypatch.undo()
    Job.objects.filter(pk=again.pk).update(run_after=timezone.now())
    drain()
    assert entry(media) is not None
    assert indexing.lag()["pending_jobs"] == 0


def test_a_failing_queue_never_fails_the_change(queued, alice, monkeypatch):
    def no_queue(*args, **kwargs):
        raise RuntimeError("the job table is gone")

    monkeypatch.setattr(jobs, "enqueue", no_queue)
    with transaction.atomic():
        media = make_media(alice, "IMG_3.jpg", datetime(2019, 7, 4, 12, tzinfo=UTC))
    assert Media.objects.filter(pk=media.pk).exists()


@pytest.mark.django_db(transaction=False)
def test_an_upload_is_searchable_once_processed(alice_api, upload, corpus):
    """The real path: upload, processing (EXIF, place, camera; inline jobs), then a search."""
    response = upload(alice_api, corpus / "jpg" / "gps" / "DSCN0025.jpg")
    assert response.status_code == 201
    media = Media.objects.get(pk=response.json()["id"])
    assert media.status == Media.Status.READY and media.place_city and media.camera_make
    entry_row = entry(media)
    assert entry_row.city == media.place_city and entry_row.camera == media.camera
    body = alice_api.get(f"/api/v1/search/?q={media.place_city}&camera={media.camera}").json()
    assert [r["id"] for r in body["results"]] == [str(media.pk)]
    assert alice_api.get("/api/v1/search/?q=dscn0025").json()["count"] == 1
