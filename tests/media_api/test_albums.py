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


# --- An album's page: AlbumItem rows carry taken_at, kept exact ------------------------------
def album_rows_exact() -> bool:
    """Every album row's taken_at is its media's (what the album page's order relies on)."""
    from gallery.models import AlbumItem

    return all(item.taken_at == item.media.taken_at for item in AlbumItem.objects.select_related("media"))


def test_an_album_page_follows_taken_at_edits_the_trash_and_restores(alice, alice_api, make_media):
    from gallery.services.trash import trash_restore

    album = alice_api.post("/api/v1/albums/", {"title": "Years"}, format="json").json()
    media = [make_media(alice, when=datetime(2020 + i, 1, 1, tzinfo=timezone.utc))[0] for i in range(5)]
    url = f"/api/v1/albums/{album['id']}/media/"
    alice_api.post(url, {"add": ids(media)}, format="json")

    def walk(size: int) -> list[str]:
        page, seen = alice_api.get(f"{url}?page_size={size}").json(), []
        while True:
            seen += [m["id"] for m in page["results"]]
            if not page["next"]:
                return seen
            page = alice_api.get(page["next"]).json()

    assert walk(2) == ids(media[::-1]) and album_rows_exact()
    edited = alice_api.patch(f"/api/v1/media/{media[0].pk}/", {"taken_at": "2030-06-01T10:00:00+02:00"},
                             format="json")
    assert edited.status_code == 200 and album_rows_exact()
    assert walk(2) == ids([media[0], *media[:0:-1]])
    media_trash(media=media[2])
    assert walk(2) == ids([media[0], media[4], media[3], media[1]])
    assert alice_api.get(url).json()["count"] == 4
    trash_restore(owner=alice, media=[media[2].pk])
    assert walk(3) == ids([media[0], *media[:0:-1]]) and alice_api.get(url).json()["count"] == 5
    second = alice_api.get(f"{url}?page_size=2").json()["next"]
    back = alice_api.get(alice_api.get(second).json()["previous"]).json()
    assert [m["id"] for m in back["results"]] == ids([media[0], media[4]]) and back["previous"] is None


def test_album_rows_follow_processing(alice, alice_api, upload, corpus):
    from gallery.models import AlbumItem, Media
    from gallery.processing.pipeline import media_process

    photo = upload(alice_api, corpus / "jpg" / "Canon_40D.jpg").json()
    album = alice_api.post("/api/v1/albums/", {"title": "Camera"}, format="json").json()
    alice_api.post(f"/api/v1/albums/{album['id']}/media/", {"add": [photo["id"]]}, format="json")
    alice_api.post(f"/api/v1/media/{photo['id']}/favourite")
    # As if the date were still the upload's estimate: processing finds the EXIF one again.
    later = datetime(2031, 1, 1, tzinfo=timezone.utc)
    Media.objects.filter(pk=photo["id"]).update(taken_at=later, taken_at_estimated=True)
    AlbumItem.objects.filter(media_id=photo["id"]).update(taken_at=later)
    media_process(media_id=photo["id"])
    assert Media.objects.get(pk=photo["id"]).taken_at.year == 2008
    assert AlbumItem.objects.filter(media_id=photo["id"]).count() == 2 and album_rows_exact()


def test_the_migration_copies_each_rows_taken_at(alice, make_media):
    import importlib

    from django.apps import apps

    from gallery.models import AlbumItem

    copy_taken_at = importlib.import_module("gallery.migrations.0010_album_items").copy_taken_at
    album = Album.objects.create(owner=alice, title="Old")
    media = [make_media(alice, when=datetime(2019 + i, 5, 1, tzinfo=timezone.utc))[0] for i in range(3)]
    AlbumItem.objects.bulk_create([AlbumItem(album=album, media=m, taken_at=datetime(2000, 1, 1, tzinfo=timezone.utc))
                                   for m in media])
    copy_taken_at(apps, None)
    assert album_rows_exact() and AlbumItem.objects.count() == 3


# --- The album list: keyset pages ------------------------------------------------------------
def test_the_album_list_pages_by_cursor_favourites_first(alice, alice_api):
    for i in range(5):
        alice_api.post("/api/v1/albums/", {"title": f"A{i}"}, format="json")
    first = alice_api.get("/api/v1/albums/?page_size=2").json()
    assert first["count"] == 6 and first["previous"] is None
    assert [a["title"] for a in first["results"]] == ["Favourites", "A4"]
    pages = [first]
    while pages[-1]["next"]:
        pages.append(alice_api.get(pages[-1]["next"]).json())
    assert [[a["title"] for a in p["results"]] for p in pages] == [["Favourites", "A4"], ["A3", "A2"], ["A1", "A0"]]
    back = alice_api.get(pages[2]["previous"]).json()
    assert back["results"] == pages[1]["results"] and back["next"]
    assert alice_api.get(back["previous"]).json()["results"] == first["results"]


@pytest.mark.parametrize("cursor", ["!!!", "bm90IGEgY3Vyc29y", "bnwxfDk5OTk5OTk5OTk5OTk5OTk5OTk5", "eHwwfDE"])
def test_an_album_list_cursor_we_did_not_hand_out_is_a_400(alice_api, cursor):
    response = alice_api.get(f"/api/v1/albums/?cursor={cursor}")
    assert response.status_code == 400 and "cursor" in response.json()["detail"]
    assert alice_api.get("/api/v1/albums/?page_size=0").status_code == 400
