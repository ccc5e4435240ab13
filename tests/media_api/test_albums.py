"""Albums and favourites: Favourites first and undeletable, idempotent bulk membership,
covers, the 404 rule for others' ids, and lists of a constant number of queries."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from gallery.models import Album
from gallery.services.trash import media_trash
from tests.media_api.conftest import queries_of


def fail():
    pytest.fail("unexpected response")


def ids(items) -> list[str]:
    return [str(m.pk) for m in items]


def test_favourites_exists_for_everyone_comes_first_and_cannot_be_deleted_or_renamed(alice, alice_api):
    Album.objects.filter(owner=alice).delete()  # made on first use, even if it went missing
    created = alice_api.post("/api/v1/albums/", {"title": "  Holidays  "}, format="json")
    assert created.status_code == 201 and created.json()["title"] == "Holidays"
    listing = alice_api.get("/api/v1/albums/").json()
    assert [a["title"] for a in listing["results"]] == ["Favourites", "Holidays"]
    favourites = listing["results"][0]
    assert favourites["favourites"] is True and favourites["count"] == 0 and favourites["cover"] is None
    refused = alice_api.delete(f"/api/v1/albums/{favourites['id']}/")
    assert refused.status_code == 409 and refused.json()["error"] == "protected_album"
    renamed = alice_api.patch(f"/api/v1/albums/{favourites['id']}/", {"title": "Best"}, format="json")
    assert renamed.status_code == 409
    assert alice_api.delete(f"/api/v1/albums/{created.json()['id']}/").status_code == 204
    assert [a["title"] for a in alice_api.get("/api/v1/albums/").json()["results"]] == ["Favourites"]


def test_title_is_required_and_bounded(alice_api):
    for body in ({}, {"title": "   "}, {"title": "x" * 201}, {"title": ["a"]}):
        response = alice_api.post("/api/v1/albums/", body, format="json")
        assert response.status_code == 400 and response.json()["error"] == "invalid", body


def test_add_and_remove_are_idempotent_and_the_page_has_the_total(alice, alice_api, make_media):
    album = alice_api.post("/api/v1/albums/", {"title": "Trip"}, format="json").json()
    media = make_media(alice, 5)
    url = f"/api/v1/albums/{album['id']}/media/"
    for _ in range(2):
        response = alice_api.post(url, {"add": ids(media)}, format="json")
        assert response.status_code == 200 and response.json()["count"] == 5
    assert alice_api.post(url, {"remove": ids(media[:2])}, format="json").json()["count"] == 3
    assert alice_api.post(url, {"remove": ids(media[:2])}, format="json").json()["count"] == 3
    page = alice_api.get(url + "?page_size=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    rest = alice_api.get(page["next"]).json()
    assert {m["id"] for m in page["results"] + rest["results"]} == set(ids(media[2:]))
    assert all(album["id"] in m["albums"] for m in rest["results"])


def test_at_most_1000_ids(alice, alice_api):
    album = alice_api.post("/api/v1/albums/", {"title": "Big"}, format="json").json()
    many = [str(uuid.uuid4()) for _ in range(1001)]
    for body in ({"add": many}, {"add": many[:600], "remove": many[600:]}):
        response = alice_api.post(f"/api/v1/albums/{album['id']}/media/", body, format="json")
        assert response.status_code == 400 and response.json()["error"] == "invalid"
    bad = alice_api.post(f"/api/v1/albums/{album['id']}/media/", {"add": ["not-an-id"]}, format="json")
    assert bad.status_code == 400


def test_other_users_trashed_and_unknown_ids_are_404_and_nothing_changes(alice, charlie, alice_api, make_media):
    album = alice_api.post("/api/v1/albums/", {"title": "Mine"}, format="json").json()
    mine, theirs, trashed = make_media(alice)[0], make_media(charlie)[0], make_media(alice)[0]
    media_trash(media=trashed)
    url = f"/api/v1/albums/{album['id']}/media/"
    for stranger in (theirs.pk, trashed.pk, uuid.uuid4()):
        response = alice_api.post(url, {"add": [str(mine.pk), str(stranger)]}, format="json")
        assert response.status_code == 404, stranger
        assert response.json()["error"] == "not_found" and response.json()["missing"] == [str(stranger)]
    assert alice_api.get(url).json()["count"] == 0  # not even `mine` was added


def test_another_users_album_is_404_for_every_call(alice, alice_api, charlie_api, make_media):
    album = alice_api.post("/api/v1/albums/", {"title": "Private"}, format="json").json()
    theirs = make_media(alice)[0]
    base = f"/api/v1/albums/{album['id']}/"
    assert charlie_api.get(base).status_code == 404
    assert charlie_api.patch(base, {"title": "x"}, format="json").status_code == 404
    assert charlie_api.delete(base).status_code == 404
    assert charlie_api.get(base + "media/").status_code == 404
    assert charlie_api.post(base + "media/", {"add": [str(theirs.pk)]}, format="json").status_code == 404
    assert [a["title"] for a in charlie_api.get("/api/v1/albums/").json()["results"]] == ["Favourites"]
    for odd in ("abc", "9" * 30, "-1"):
        response = alice_api.get(f"/api/v1/albums/{odd}/")
        assert response.status_code == 404 and response.json()["error"] == "not_found", odd


def test_cover_is_the_newest_item_or_the_chosen_one(alice, charlie, alice_api, make_media):
    album = alice_api.post("/api/v1/albums/", {"title": "Covers"}, format="json").json()
    base = f"/api/v1/albums/{album['id']}/"
    old = make_media(alice, when=datetime(2020, 1, 1, tzinfo=timezone.utc))[0]
    new = make_media(alice, when=datetime(2023, 1, 1, tzinfo=timezone.utc))[0]
    outside = make_media(alice)[0]
    alice_api.post(base + "media/", {"add": ids([old, new])}, format="json")
    cover = alice_api.get(base).json()["cover"]
    assert cover["id"] == str(new.pk) and cover["chosen"] is False
    chosen = alice_api.patch(base, {"cover": str(old.pk)}, format="json").json()["cover"]
    assert chosen["id"] == str(old.pk) and chosen["chosen"] is True
    not_member = alice_api.patch(base, {"cover": str(outside.pk)}, format="json")
    assert not_member.status_code == 400
    theirs = make_media(charlie)[0]
    assert alice_api.patch(base, {"cover": str(theirs.pk)}, format="json").status_code == 404
    media_trash(media=old)  # a trashed cover is not shown: the newest visible item is
    assert alice_api.get(base).json()["cover"]["id"] == str(new.pk)
    assert alice_api.get(base).json()["count"] == 1
    assert alice_api.patch(base, {"cover": None}, format="json").json()["cover"]["id"] == str(new.pk)


def test_favourite_and_unfavourite(alice, alice_api, charlie_api, make_media):
    media = make_media(alice)[0]
    favourites = alice_api.get("/api/v1/albums/").json()["results"][0]
    for path in (f"/api/v1/media/{media.pk}/favourite", f"/api/v1/media/{media.pk}/favourite/"):
        body = alice_api.post(path).json()
        assert body["favourite"] is True and body["albums"] == [favourites["id"]]
        assert alice_api.post(path).json()["favourite"] is True  # idempotent
        assert alice_api.delete(path).json()["favourite"] is False
        assert alice_api.delete(path).status_code == 200
    assert charlie_api.post(f"/api/v1/media/{media.pk}/favourite").status_code == 404
    alice_api.post(f"/api/v1/media/{media.pk}/favourite")
    assert alice_api.get(f"/api/v1/albums/{favourites['id']}/").json()["count"] == 1
    listed = alice_api.get("/api/v1/media/").json()["results"][0]
    assert listed["favourite"] is True and listed["tags"] == [] and listed["description"] == ""


def test_album_list_and_album_page_have_a_constant_number_of_queries(alice, alice_api, make_media):
    def album_with(n: int) -> str:
        album = alice_api.post("/api/v1/albums/", {"title": f"{n} items"}, format="json").json()
        media = make_media(alice, n)
        alice_api.post(f"/api/v1/albums/{album['id']}/media/", {"add": ids(media)}, format="json")
        for m in media[:2]:
            alice_api.post(f"/api/v1/media/{m.pk}/favourite")
        return f"/api/v1/albums/{album['id']}/media/"

    small, large = album_with(2), album_with(7)
    few = queries_of(lambda: alice_api.get(small).json()["count"] == 2 or fail())
    many = queries_of(lambda: alice_api.get(large).json()["count"] == 7 or fail())
    assert few == many > 0
    few_albums = queries_of(lambda: alice_api.get("/api/v1/albums/").json()["count"] == 3 or fail())
    for n in range(4):
        album_with(1)
    many_albums = queries_of(lambda: alice_api.get("/api/v1/albums/").json()["count"] == 7 or fail())
    assert few_albums == many_albums > 0


def test_read_scope_cannot_change_albums(alice):
    from tests.conftest import api_client

    reader = api_client(alice, scopes=("media.read",))
    assert reader.get("/api/v1/albums/").status_code == 200
    refused = reader.post("/api/v1/albums/", {"title": "x"}, format="json")
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"


def test_timestamps_are_not_needed_for_ordering_albums(alice, alice_api):
    first = alice_api.post("/api/v1/albums/", {"title": "A"}, format="json").json()
    Album.objects.filter(pk=first["id"]).update(created_at=datetime.now(timezone.utc) - timedelta(days=1))
    alice_api.post("/api/v1/albums/", {"title": "B"}, format="json")
    assert [a["title"] for a in alice_api.get("/api/v1/albums/").json()["results"]] == ["Favourites", "B", "A"]
