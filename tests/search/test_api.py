"""GET /api/v1/search/: bad input is a 400 naming the parameter; results pass the visibility
rule even when the index is behind; the reindex and search_setup commands; /health/."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from gallery.models import Media
from search import indexing
from search.models import SearchEntry
from tests.conftest import api_client
from tests.search.conftest import make_media


@pytest.mark.parametrize("params,names", [
    ("kind=picture", "kind"),
    ("year=twenty", "year"),
    ("year=0", "year"),
    ("month=13", "month"),
    ("day=32", "day"),
    ("album=-1", "album"),
    ("album=1e3", "album"),
    ("favourite=maybe", "favourite"),
    ("from=2019-02-30", "from"),
    ("to=yesterday", "to"),
    ("from=2020-01-02&to=2020-01-01", "from"),
    ("near=48.8", "near"),
    ("near=91,0,1", "near"),
    ("near=0,0,0", "near"),
    ("near=nan,0,1", "near"),
    ("facets=colour", "facets"),
    ("sort=name", "sort"),
    ("sort=relevance&sort=taken_at", "sort"),
    ("page_size=0", "page_size"),
    ("page_size=201", "page_size"),
    ("page_size=ten", "page_size"),
    ("cursor=nonsense", "cursor"),
    ("cursor=eyJzIjoicmVsZXZhbmNlIiwibyI6LTF9", "cursor"),   # {"s":"relevance","o":-1}
    ("q=" + "x" * 501, "q"),
    ("tag=", "tag"),
    ("city=" + "y" * 201, "city"),
    ("colour=red", "colour"),
    ("&".join(["tag=t"] * 51), "tag"),
])
def test_bad_parameters_are_a_400_naming_them(alice_api, params, names):
    response = alice_api.get(f"/api/v1/search/?{params}")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid" and body["detail"].startswith(names), body


def test_a_cursor_of_another_sort_is_refused(search_backend, library, alice_api):
    search_backend.reindex()
    cursor = alice_api.get("/api/v1/search/?page_size=1").json()["next"].split("cursor=")[1]
    response = alice_api.get(f"/api/v1/search/?sort=taken_at&cursor={cursor}")
    assert response.status_code == 400 and response.json()["detail"].startswith("cursor")


def test_credentials(alice):
    assert APIClient().get("/api/v1/search/").status_code in (401, 403)
    assert api_client(alice, scopes=("media.read",)).get("/api/v1/search/").status_code == 200


def test_results_pass_the_visibility_rule_when_the_index_is_behind(library, alice_api):
    indexing.reindex()
    # Trashed and moved to the vault without the index hearing of it (no job ran).
    Media.objects.filter(pk=library["img"].pk).update(trashed_at=timezone.now())
    Media.objects.filter(pk=library["dsc"].pk).update(in_vault=True)
    body = alice_api.get("/api/v1/search/?q=france&sort=-taken_at").json()
    assert [r["name"] for r in body["results"]] == ["voice memo.m4a"]


def test_results_are_the_library_json(library, alice_api, django_assert_max_num_queries):
    indexing.reindex()
    with django_assert_max_num_queries(12):  # credential, count, page, media, variants: not one per media
        body = alice_api.get("/api/v1/search/?year=2019&facets=kind,tag").json()
    listed = alice_api.get("/api/v1/media/").json()["results"]
    by_id = {m["id"]: m for m in listed}
    assert body["results"] and all(r == by_id[r["id"]] for r in body["results"])


def test_vault_media_are_never_indexed(library):
    indexing.reindex()
    indexed = set(SearchEntry.objects.values_list("media_id", flat=True))
    assert library["vault"].pk not in indexed and library["trashed"].pk not in indexed
    assert library["img"].pk in indexed


def test_name_fragments_match_in_the_database_backend(library, alice_api):
    # Trigram indexes on the file name (PostgreSQL pg_trgm, SQLite FTS5 trigram): a piece
    # of a name, not only its words. (Meilisearch matches words and their prefixes instead.)
    indexing.reindex()
    assert [r["name"] for r in alice_api.get("/api/v1/search/?q=0704").json()["results"]] == [
        "IMG_20190704_181503.jpg"]
    assert [r["name"] for r in alice_api.get("/api/v1/search/?q=liday").json()["results"]] == [
        "MyHolidayVideo.mp4"]


def test_reindex_command(library, bob):
    SearchEntry.objects.all().delete()
    out, err = io.StringIO(), io.StringIO()
    call_command("reindex", "--user", "alice", stdout=out, stderr=err)
    assert "indexed 5 media" in out.getvalue()
    assert "5/5 100%" in err.getvalue() and "documents/s" in err.getvalue()
    assert SearchEntry.objects.count() == 5
    call_command("reindex", stdout=io.StringIO(), stderr=io.StringIO())
    assert SearchEntry.objects.count() == 6  # bob's too
    # What a reindex does not see (the index drifted) is removed; others' entries stay.
    stale = make_media(library["img"].owner, "old.jpg", datetime(2001, 1, 1, tzinfo=UTC))
    indexing.index_media(media_ids=[stale.pk])
    Media.objects.filter(pk=stale.pk).update(in_vault=True)
    call_command("reindex", "--user", "alice", stdout=io.StringIO(), stderr=io.StringIO())
    assert not SearchEntry.objects.filter(media_id=stale.pk).exists()
    assert SearchEntry.objects.filter(owner=bob).count() == 1
    with pytest.raises(CommandError, match="no user named"):
        call_command("reindex", "--user", "nobody", stdout=io.StringIO(), stderr=io.StringIO())


def test_search_setup_command():
    out = io.StringIO()
    call_command("search_setup", stdout=out)
    call_command("search_setup", stdout=out)
    assert "search ready" in out.getvalue()


def test_health_reports_the_backend_and_its_lag(client, settings, alice):
    settings.HEALTH_TOKEN = "health-token"
    indexing.enqueue_index(["00000000-0000-0000-0000-000000000001"], delay_seconds=3600)
    body = client.get("/health/", HTTP_AUTHORIZATION="Bearer health-token").json()
    search = body["checks"]["search"]
    assert search["ok"] is True and search["backend"] == "db"
    assert search["pending_jobs"] == 1 and search["lag_seconds"] >= 0 and search["failed_jobs"] == 0


VALUES = st.one_of(
    st.text(max_size=30),
    st.integers(-10**20, 10**20).map(str),
    st.sampled_from(["", "²", "١٢", "1e3", "nan", "inf", "-0", "9" * 40, "2019-02-29", "2020-02-29", "0,0,0",
                     "91,0,1", "1,2,3", "image", "true", "relevance", "-taken_at", "kind,year", "\x00", "%", "_",
                     '"', "'", "*", "&", "|", "!", ":*", "NEAR(a b)", "a OR b", "\\"]),
)
NAMES = st.sampled_from(["q", "kind", "year", "month", "day", "country", "city", "camera", "tag", "album",
                         "favourite", "from", "to", "near", "facets", "sort", "page_size", "cursor", "other"])


@given(params=st.lists(st.tuples(NAMES, VALUES), max_size=6))
@settings(derandomize=True, max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_fuzzed_parameters_are_never_a_5xx(alice_api, params):
    response = alice_api.get("/api/v1/search/", params)
    assert response.status_code in (200, 400), (params, response.content[:300])
    if response.status_code == 400:
        assert response.json()["error"] == "invalid" and response.json()["detail"]
