"""The list's compiled queries (media_api.views.media: page_query, count_query; the API key's in
gallery.services.accounts) answer what the ORM's querysets answer, and give way to them when
the rule cannot be compiled."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from django.utils import timezone as django_timezone

from gallery.models import ApiKey, Media, MediaQuerySet
from gallery.services import accounts
from gallery.services.accounts import apikey_authenticate, apikey_revoke
from gallery.services.trash import media_trash
from media_api.views import media as media_views
from tests.conftest import api_client


@pytest.fixture
def library(alice, bob, make_media) -> list[Media]:
    """Alice's media on three dates (two sharing a moment), one trashed, one in the vault (set
    directly: the counters still count it, and both paths read the counters); Bob's."""
    made = make_media(alice, 4) + make_media(alice, 3, when=datetime(2024, 5, 17, 9, tzinfo=timezone.utc))
    made += make_media(alice, 2, when=datetime(2023, 1, 2, 23, 30, tzinfo=timezone.utc), name="a.pdf")
    make_media(bob, 2)
    media_trash(media=made[0])
    Media.objects.filter(pk=made[1].pk).update(in_vault=True)
    return [Media.objects.get(pk=m.pk) for m in made]


def _walk(client, query: str) -> list:
    """Every page of the list for `query`, following `next` links, then the last page's `previous`."""
    pages = [client.get(f"/api/v1/media/?{query}")]
    while pages[-1].status_code == 200 and pages[-1].json()["next"]:
        pages.append(client.get(pages[-1].json()["next"]))
    if pages[-1].status_code == 200 and pages[-1].json()["previous"]:
        pages.append(client.get(pages[-1].json()["previous"]))
    return [(page.status_code, page.json()) for page in pages]


def _queries(library: list[Media]) -> list[str]:
    dated = library[-1]
    return ["", "page_size=2", "page_size=1&kind=document", "kind=image", f"sha256={library[3].sha256.upper()}",
            f"sha256={library[0].sha256}", f"bucket={dated.taken_month:%Y-%m}", f"bucket={dated.taken_day}",
            f"bucket={dated.taken_month:%Y-%m}&kind=document&page_size=1"]


def test_compiled_pages_and_counts_are_the_querysets(alice, alice_api, library, monkeypatch):
    compiled = {query: _walk(alice_api, query) for query in _queries(library)}
    assert any(media_views._PAGE_QUERIES.values()), "the pages were not read by compiled queries"
    first = compiled[""][0][1]
    shown = {m.pk for m in library[2:]}
    assert {m["id"] for m in first["results"]} == {str(pk) for pk in shown}
    assert first["count"] == Media.objects.visible_count(alice)
    monkeypatch.setattr(media_views, "page_query", lambda *args: None)
    monkeypatch.setattr(media_views, "count_query", lambda *args: None)
    assert {query: _walk(alice_api, query) for query in _queries(library)} == compiled


def test_a_rule_that_does_not_compile_gives_way_to_the_queryset(alice, alice_api, library, monkeypatch):
    rule = MediaQuerySet.visible_to

    def reads_the_time(self, user, **kwargs):
        return rule(self, user, **kwargs).filter(created_at__lte=django_timezone.now())

    monkeypatch.setattr(MediaQuerySet, "visible_to", reads_the_time)
    monkeypatch.setattr(media_views, "_PAGE_QUERIES", {})
    page = alice_api.get("/api/v1/media/?page_size=3").json()
    assert list(media_views._PAGE_QUERIES.values()) == [None]
    assert len(page["results"]) == 3 and page["count"] == Media.objects.visible_count(alice) and page["next"]
    pages = _walk(alice_api, "page_size=3")
    assert {m["id"] for _, p in pages[:-1] for m in p["results"]} == {str(m.pk) for m in library[2:]}


def test_the_compiled_key_lookup_loads_what_select_related_loads(alice, monkeypatch):
    key, raw = accounts.apikey_create(user=alice, name="k", scopes=["media.read"])
    apikey_authenticate(raw=raw)  # records its use: the next lookup reads the row as it stays
    found = apikey_authenticate(raw=raw)
    expected = ApiKey.objects.select_related("user").get(pk=key.pk)

    def fields(obj):
        return {name: value for name, value in vars(obj).items() if name != "_state"}

    assert fields(found) == fields(expected) and fields(found.user) == fields(expected.user)
    assert found._state.adding is False and found.user._state.db == expected.user._state.db
    monkeypatch.setattr(accounts, "_compiled_key_query", lambda using: None)  # the ORM's own, the same
    assert fields(apikey_authenticate(raw=raw)) == fields(ApiKey.objects.select_related("user").get(pk=key.pk))


def test_a_revoked_key_or_a_trashed_media_counts_at_once(alice, library):
    client = api_client(alice)
    before = client.get("/api/v1/media/").json()
    media_trash(media=library[2])
    after = client.get("/api/v1/media/").json()
    assert after["count"] == before["count"] - 1 and str(library[2].pk) not in {m["id"] for m in after["results"]}
    apikey_revoke(key=ApiKey.objects.filter(user=alice).get())
    assert client.get("/api/v1/media/").status_code == 401
