"""Tags: bulk tagging by name (trimmed, case-insensitive), counts of visible media only,
the 404 rule for others' ids, and a tag list of a constant number of queries."""

from __future__ import annotations

import uuid

from gallery.models import Tag
from gallery.services.trash import media_trash
from tests.media_api.conftest import queries_of


def bulk(client, media, add=(), remove=()):
    body = {"media": [str(m.pk) for m in media], "add": list(add), "remove": list(remove)}
    return client.post("/api/v1/tags/bulk", body, format="json")


def test_names_are_trimmed_and_compared_case_insensitively(alice, alice_api, make_media):
    media = make_media(alice, 3)
    assert bulk(alice_api, media[:2], add=["  Summer  ", "summer", "Été  2024"]).status_code == 200
    assert bulk(alice_api, media[2:], add=["SUMMER", "ÉTÉ 2024"]).status_code == 200
    assert Tag.objects.filter(owner=alice).count() == 2
    # The first spelling stays; sorted by the case-folded name.
    assert alice_api.get("/api/v1/tags/").json() == [{"name": "Summer", "count": 3}, {"name": "Été 2024", "count": 3}]
    assert alice_api.get(f"/api/v1/media/{media[0].pk}/").json()["tags"] == ["Summer", "Été 2024"]
    assert bulk(alice_api, media[:1], remove=["sUmMeR"]).status_code == 200
    assert alice_api.get(f"/api/v1/media/{media[0].pk}/").json()["tags"] == ["Été 2024"]
    assert bulk(alice_api, media, remove=["summer", "never used"]).status_code == 200
    assert alice_api.get("/api/v1/tags/").json() == [{"name": "Été 2024", "count": 3}]
    assert not Tag.objects.filter(owner=alice, key="summer").exists()  # left on nothing: gone


def test_adding_twice_is_harmless_and_both_lists_end_removed(alice, alice_api, make_media):
    media = make_media(alice, 2)
    bulk(alice_api, media, add=["a"])
    bulk(alice_api, media, add=["A", "b"], remove=["b"])
    assert alice_api.get("/api/v1/tags/").json() == [{"name": "a", "count": 2}]


def test_counts_leave_out_trashed_media_and_other_users(alice, bob, alice_api, bob_api, make_media):
    mine, trashed, theirs = make_media(alice)[0], make_media(alice)[0], make_media(bob)[0]
    bulk(alice_api, [mine, trashed], add=["x"])
    bulk(bob_api, [theirs], add=["X", "y"])
    media_trash(media=trashed)
    assert alice_api.get("/api/v1/tags/").json() == [{"name": "x", "count": 1}]
    assert bob_api.get("/api/v1/tags/").json() == [{"name": "X", "count": 1}, {"name": "y", "count": 1}]


def test_other_users_and_trashed_ids_are_404_and_nothing_is_tagged(alice, charlie, alice_api, make_media):
    mine, theirs, trashed = make_media(alice)[0], make_media(charlie)[0], make_media(alice)[0]
    media_trash(media=trashed)
    for other in (theirs, trashed):
        response = bulk(alice_api, [mine, other], add=["nope"])
        assert response.status_code == 404 and response.json()["missing"] == [str(other.pk)]
    unknown = alice_api.post("/api/v1/tags/bulk", {"media": [str(uuid.uuid4())], "add": ["n"]}, format="json")
    assert unknown.status_code == 404
    assert not Tag.objects.filter(owner=alice).exists()
    assert not Tag.objects.filter(owner=charlie).exists()


def test_bad_bodies_are_400_json(alice, alice_api, make_media):
    media = make_media(alice)[0]
    for body in (
        {"media": [str(media.pk)], "add": ["   "]},
        {"media": [str(media.pk)], "add": ["x" * 101]},
        {"media": [], "add": ["a"]},
        {"media": [str(uuid.uuid4()) for _ in range(1001)], "add": ["a"]},
        {"media": ["nope"], "add": ["a"]},
        {"media": [str(media.pk)], "add": "a-string"},
        {"media": [str(media.pk)], "add": [f"t{i}" for i in range(101)]},
    ):
        response = alice_api.post("/api/v1/tags/bulk", body, format="json")
        assert response.status_code == 400 and response.json()["error"] == "invalid", body


def test_tag_list_and_media_list_have_a_constant_number_of_queries(alice, alice_api, make_media):
    media = make_media(alice, 6)
    bulk(alice_api, media[:2], add=["one", "two"])
    few = queries_of(lambda: alice_api.get("/api/v1/tags/"))
    few_media = queries_of(lambda: alice_api.get("/api/v1/media/"))
    bulk(alice_api, media, add=[f"tag {i}" for i in range(8)])
    many = queries_of(lambda: alice_api.get("/api/v1/tags/"))
    many_media = queries_of(lambda: alice_api.get("/api/v1/media/"))
    assert len(alice_api.get("/api/v1/tags/").json()) == 10
    assert few == many and few_media == many_media
