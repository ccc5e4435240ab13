"""The contract: the same queries and the same answers from every backend (the database on
SQLite or PostgreSQL, and Meilisearch when MEILISEARCH_URL is set), through the API.

Local times (tests/search/conftest.py): img 2019-07-04 Thu, dsc 2019-10-12 Sat (alice's
zone), video 2008-10-31 Fri (New York), scan 2009-01-01 Thu (Paris; 2008 in UTC), memo
2019-07-20 Sat. Newest first: dsc, memo, img, scan, video.
"""

from __future__ import annotations

import pytest

NEWEST_FIRST = ["dsc", "memo", "img", "scan", "video"]
NAMES = {"img": "IMG_20190704_181503.jpg", "dsc": "DSC01234.JPG", "video": "MyHolidayVideo.mp4",
         "scan": "scan.pdf", "memo": "voice memo.m4a"}
KEY_OF = {v: k for k, v in NAMES.items()}

# (query string, the media it finds, newest first)
CASES = [
    ("", NEWEST_FIRST),
    ("q=img", ["img"]),
    ("q=IMG_2019", ["img"]),
    ("q=20190704", ["img"]),
    ("q=181503", ["img"]),
    ("q=dsc01234", ["dsc"]),
    ("q=dsc", ["dsc"]),
    ("q=holiday", ["dsc", "img", "video"]),   # album title, and MyHolidayVideo split at camelCase
    ("q=my holiday video", ["video"]),
    ("q=holi", ["dsc", "img", "video"]),        # the last word is a prefix
    ("q=fr", ["dsc", "memo", "img", "video"]),  # France, and Friday (video)
    ("q=paris holi", ["img"]),
    ("q=holi paris", []),                       # only the last word is a prefix
    ("q=october", ["dsc", "video"]),
    ("q=oct", ["dsc", "video"]),
    ("q=saturday", ["dsc", "memo"]),
    ("q=sat", ["dsc", "memo"]),
    ("q=thursday", ["img", "scan"]),
    ("q=thu", ["img", "scan"]),
    ("q=2009", ["scan"]),
    ("q=paris beach", ["img"]),
    ("q=Zürich", []),
    ("q=ile de france", ["memo", "img"]),
    ("q=canon", ["dsc"]),
    ("q=iphone", ["img"]),
    ("q=f/1.8", ["img"]),                        # the lens
    ("q=france", ["dsc", "memo", "img"]),
    ("q=voice memo", ["memo"]),
    ("q=video", ["video"]),
    ("q=jpg", ["dsc", "img"]),
    ("q=summer", ["img"]),
    ("q=nothinglikethis", []),
    ("q=bob", []),                               # bob's media are bob's
    ("q=secret", []),                            # the vault is never indexed
    ("q=999999", []),                            # nor the trash
    ("kind=video", ["video"]),
    ("kind=image&kind=video", ["dsc", "img", "video"]),
    ("year=2019", ["dsc", "memo", "img"]),
    ("year=2009", ["scan"]),
    ("year=2008", ["video"]),
    ("year=2008&year=2009", ["scan", "video"]),
    ("month=10", ["dsc", "video"]),
    ("year=2019&month=7", ["memo", "img"]),
    ("day=4", ["img"]),
    ("country=France&city=Lyon", ["dsc"]),
    ("city=Paris&city=Lyon", ["dsc", "memo", "img"]),
    ("camera=Canon EOS 40D", ["dsc"]),
    ("camera=Apple iPhone 8", ["img"]),
    ("tag=beach", ["img", "video"]),
    ("tag=beach&tag=family", ["dsc", "img", "video"]),
    ("tag=beach&kind=video", ["video"]),
    ("tag=nope", []),
    ("favourite=true", ["img"]),
    ("favourite=false", ["dsc", "memo", "scan", "video"]),
    ("from=2019-07-04&to=2019-07-04", ["img"]),
    ("from=2009-01-01", ["dsc", "memo", "img", "scan"]),
    ("to=2008-12-31", ["video"]),
    ("near=48.85,2.35,10", ["img"]),
    ("near=48.85,2.35,500", ["dsc", "img"]),
    ("near=40.7,-74.0,5&kind=video", ["video"]),
    ("q=2019&kind=image", ["dsc", "img"]),
    ("q=france&year=2019&month=7&city=Paris", ["memo", "img"]),
]


def names(response) -> list[str]:
    return [KEY_OF[r["name"]] for r in response.json()["results"]]


@pytest.mark.parametrize("params,expected", CASES, ids=[c[0] or "everything" for c in CASES])
def test_same_answers(search_backend, library, alice_api, params, expected):
    search_backend.reindex()
    response = alice_api.get(f"/api/v1/search/?{params}&sort=-taken_at&page_size=50")
    assert response.status_code == 200, response.json()
    assert names(response) == expected
    assert response.json()["count"] == len(expected)
    assert response.json()["next"] is None


def test_sort_oldest_first(search_backend, library, alice_api):
    search_backend.reindex()
    assert names(alice_api.get("/api/v1/search/?sort=taken_at")) == NEWEST_FIRST[::-1]


def test_album_filter(search_backend, library, alice_api):
    search_backend.reindex()
    response = alice_api.get(f"/api/v1/search/?album={library['holidays'].pk}")
    assert names(response) == ["dsc", "img"]


def test_facets(search_backend, library, alice_api):
    search_backend.reindex()
    from gallery.models import Album

    favourites = Album.objects.get(owner=library["img"].owner, is_favourites=True)
    body = alice_api.get("/api/v1/search/?facets=kind,year,month,country,city,camera,tag,album").json()
    assert body["count"] == 5
    assert body["facets"] == {
        "kind": {"image": 2, "video": 1, "document": 1, "audio": 1},
        "year": {"2019": 3, "2008": 1, "2009": 1},
        "month": {"7": 2, "10": 2, "1": 1},
        "country": {"France": 3, "United States": 1},
        "city": {"Paris": 2, "Lyon": 1, "New York": 1},
        "camera": {"Apple iPhone 8": 1, "Canon EOS 40D": 1},
        "tag": {"beach": 2, "summer": 1, "family": 1},
        "album": {str(library["holidays"].pk): 2, str(favourites.pk): 1},
    }
    # Counts are for the words and filters of the query.
    body = alice_api.get("/api/v1/search/?q=france&year=2019&facets=city,tag,month").json()
    assert body["count"] == 3
    assert body["facets"] == {"city": {"Paris": 2, "Lyon": 1}, "tag": {"beach": 1, "summer": 1, "family": 1},
                              "month": {"7": 2, "10": 1}}


@pytest.mark.parametrize("sort", ["-taken_at", "taken_at"])
def test_cursor_walks_every_page_once(search_backend, library, alice_api, sort):
    search_backend.reindex()
    url, seen = f"/api/v1/search/?sort={sort}&page_size=2", []
    pages = 0
    while url:
        body = alice_api.get(url).json()
        assert body["count"] == 5
        seen += [KEY_OF[r["name"]] for r in body["results"]]
        url, pages = body["next"], pages + 1
    assert pages == 3
    assert seen == (NEWEST_FIRST if sort == "-taken_at" else NEWEST_FIRST[::-1])


def test_relevance_pages(search_backend, library, alice_api):
    search_backend.reindex()
    url, seen = "/api/v1/search/?q=holiday&page_size=2", []
    while url:
        body = alice_api.get(url).json()
        assert body["count"] == 3
        seen += [KEY_OF[r["name"]] for r in body["results"]]
        url = body["next"]
    assert sorted(seen) == ["dsc", "img", "video"]


def test_relevance_puts_the_better_match_first(search_backend, library, alice_api):
    search_backend.reindex()
    # "video" is the name, the kind; "holiday" in all three.
    body = alice_api.get("/api/v1/search/?q=holiday video&sort=relevance").json()
    assert names_of(body) == ["video"]


def names_of(body) -> list[str]:
    return [KEY_OF[r["name"]] for r in body["results"]]


def test_another_user_sees_only_their_own(search_backend, library, bob_api, charlie_api):
    search_backend.reindex()
    body = bob_api.get("/api/v1/search/?q=img&facets=city").json()
    assert [r["name"] for r in body["results"]] == ["IMG_20190704_bob.jpg"]
    assert body["facets"] == {"city": {"Paris": 1}}
    assert charlie_api.get("/api/v1/search/?q=img").json()["count"] == 0
