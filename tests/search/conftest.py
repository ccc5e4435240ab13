"""A small library for search tests, and the backends to run them on.

`search_backend` is the database backend (SQLite, or PostgreSQL when DATABASE_URL says so)
and Meilisearch when MEILISEARCH_URL is set: no Meilisearch server can run on the machines
this was written on, so there its runs are skipped and reported as skipped.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import pytest

from gallery.models import Album, Media, Tag
from gallery.services.library import album_items_add, favourites_for


def make_media(owner, name: str, when: datetime, *, offset: int | None = None, kind: str = "image",
               **fields) -> Media:
    return Media.objects.create(owner=owner, original_filename=name, kind=kind, sha256=uuid.uuid4().hex * 2,
                                taken_at=when, taken_at_offset_minutes=offset, taken_at_estimated=False,
                                status=Media.Status.READY, **fields)


@pytest.fixture
def library(alice, bob):
    """alice (Europe/Paris) owns five searchable media, one trashed and one in the vault; bob one."""
    m = {}
    m["img"] = make_media(alice, "IMG_20190704_181503.jpg", datetime(2019, 7, 4, 16, 15, 3, tzinfo=UTC), offset=120,
                          place_city="Paris", place_region="Île-de-France", place_country="France",
                          camera_make="Apple", camera_model="iPhone 8", latitude=48.8566, longitude=2.3522,
                          details={"lens": "iPhone 8 back camera 3.99mm f/1.8"})
    # No offset: alice's zone (Paris, +2 in October) decides the local time.
    m["dsc"] = make_media(alice, "DSC01234.JPG", datetime(2019, 10, 12, 10, 0, tzinfo=UTC),
                          place_city="Lyon", place_region="Auvergne-Rhône-Alpes", place_country="France",
                          camera_make="Canon", camera_model="Canon EOS 40D", latitude=45.764, longitude=4.8357)
    m["video"] = make_media(alice, "MyHolidayVideo.mp4", datetime(2008, 10, 31, 23, 30, tzinfo=UTC), offset=-240,
                            kind="video", place_city="New York", place_region="New York",
                            place_country="United States", latitude=40.7128, longitude=-74.006)
    # 23:30 UTC on New Year's Eve is 00:30 on 1 January in Paris: year 2009, month 1.
    m["scan"] = make_media(alice, "scan.pdf", datetime(2008, 12, 31, 23, 30, tzinfo=UTC), kind="document")
    m["memo"] = make_media(alice, "voice memo.m4a", datetime(2019, 7, 20, 8, 0, tzinfo=UTC), offset=120,
                           kind="audio", place_city="Paris", place_region="Île-de-France", place_country="France")
    m["trashed"] = make_media(alice, "IMG_20190704_999999.jpg", datetime(2019, 7, 4, 12, 0, tzinfo=UTC),
                              trashed_at=datetime(2020, 1, 1, tzinfo=UTC))
    m["vault"] = make_media(alice, "IMG_20190704_secret.jpg", datetime(2019, 7, 4, 13, 0, tzinfo=UTC), in_vault=True)
    m["bob"] = make_media(bob, "IMG_20190704_bob.jpg", datetime(2019, 7, 4, 14, 0, tzinfo=UTC),
                          place_city="Paris", place_country="France")
    beach, summer, family = (Tag.objects.create(owner=alice, name=n) for n in ("beach", "summer", "family"))
    m["img"].tags.add(beach, summer)
    m["dsc"].tags.add(family)
    m["video"].tags.add(beach)
    m["trashed"].tags.add(beach)
    m["vault"].tags.add(beach)
    holidays = Album.objects.create(owner=alice, title="Holidays")
    album_items_add(album=holidays, media_ids=[m["img"].pk, m["dsc"].pk, m["vault"].pk])
    album_items_add(album=favourites_for(user=alice), media_ids=[m["img"].pk])
    m["holidays"] = holidays
    return m


@pytest.fixture(params=["db", "meilisearch"])
def search_backend(request, settings):
    """Yields a backend with settings pointing at it; call .reindex() after making the library."""
    from search import indexing
    from search.backends import get_backend

    if request.param == "meilisearch":
        url = os.environ.get("MEILISEARCH_URL")
        if not url:
            pytest.skip("MEILISEARCH_URL is not set: no Meilisearch server to run the contract against")
        settings.SEARCH_BACKEND = "meilisearch"
        settings.MEILISEARCH_URL = url
        settings.MEILISEARCH_API_KEY = os.environ.get("MEILISEARCH_API_KEY", "")
        settings.MEILISEARCH_INDEX = f"test-{uuid.uuid4().hex[:12]}"
    else:
        settings.SEARCH_BACKEND = "db"
    backend = get_backend()
    backend.reindex = lambda: indexing.reindex(backend=backend)
    yield backend
    if request.param == "meilisearch":
        backend.client.delete_index(settings.MEILISEARCH_INDEX)
