"""The timeline list: a keyset cursor over (taken_at, id) and counts from the counters."""

from __future__ import annotations

import base64
import importlib
import uuid
from datetime import datetime, timezone

import pytest
from django.apps import apps

from gallery.models import KindUsage, Media
from gallery.services.media import media_delete

backfill = importlib.import_module("gallery.migrations.0004_kind_usage").count_existing
SAME_MOMENT = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def bulk_media(owner, n: int, **fields) -> list[Media]:
    """`n` media made the way an import of undated files makes them: one taken_at for all."""
    rows = [Media(owner=owner, original_filename=f"{i}.txt", sha256=uuid.uuid4().hex * 2, size=10, kind="document",
                  taken_at=SAME_MOMENT, **fields) for i in range(n)]
    Media.objects.bulk_create(rows, batch_size=1000)
    KindUsage.objects.filter(owner=owner).delete()
    backfill(apps, None)  # the migration's backfill counts what bulk_create did not
    return rows


def test_5000_media_sharing_one_taken_at_page_through_without_duplicates_or_gaps(
        alice, alice_api, django_assert_max_num_queries):
    made = {str(m.pk) for m in bulk_media(alice, 5000)}
    seen: list[str] = []
    page = alice_api.get("/api/v1/media/?page_size=500").json()
    assert page["count"] == 5000 and page["previous"] is None
    while True:
        seen += [m["id"] for m in page["results"]]
        if not page["next"]:
            break
        # Flat cost: every page, the deepest included, is the same few queries (key, count,
        # page, and its variants, albums and tags).
        with django_assert_max_num_queries(6):
            page = alice_api.get(page["next"]).json()
        assert page["count"] == 5000
    assert len(seen) == len(set(seen)) == 5000 and set(seen) == made
    assert seen == sorted(seen, reverse=True)  # (taken_at, id) newest first: ids break the tie


def test_previous_links_walk_back_to_the_same_pages(alice, alice_api):
    bulk_media(alice, 25)
    pages = [alice_api.get("/api/v1/media/?page_size=10").json()]
    while pages[-1]["next"]:
        pages.append(alice_api.get(pages[-1]["next"]).json())
    assert [len(p["results"]) for p in pages] == [10, 10, 5]
    back = alice_api.get(pages[2]["previous"]).json()
    assert back["results"] == pages[1]["results"]
    first = alice_api.get(back["previous"]).json()
    assert first["results"] == pages[0]["results"] and first["previous"] is None


@pytest.mark.parametrize("cursor", [
    base64.urlsafe_b64encode(b"\xff\xfe junk").decode(), "bm90IGEgY3Vyc29y", "!!!", "",
    base64.urlsafe_b64encode(b"n|yesterday|" + str(uuid.uuid4()).encode()).decode(),
    base64.urlsafe_b64encode(b"x|2024-05-01T12:00:00+00:00|" + str(uuid.uuid4()).encode()).decode(),
])
def test_a_cursor_we_did_not_hand_out_is_a_400(alice_api, cursor):
    response = alice_api.get(f"/api/v1/media/?cursor={cursor}")
    if cursor == "":
        assert response.status_code == 200
        return
    assert response.status_code == 400
    assert response.json()["error"] == "invalid" and "cursor" in response.json()["detail"]


@pytest.mark.parametrize("size", ["0", "-1", "x", "²", "1e3"])
def test_a_bad_page_size_is_a_400(alice_api, size):
    response = alice_api.get(f"/api/v1/media/?page_size={size}")
    assert response.status_code == 400 and "page_size" in response.json()["detail"]


def test_counts_come_from_counters_kept_exact_by_the_services(alice, alice_api, bob, upload, corpus):
    ids = [upload(alice_api, name=f"{i}.txt", data=f"doc {i}".encode()).json()["id"] for i in range(3)]
    photo = upload(alice_api, corpus / "jpg" / "Canon_40D.jpg").json()["id"]
    assert alice_api.get("/api/v1/media/").json()["count"] == 4
    assert alice_api.get("/api/v1/media/?kind=document").json()["count"] == 3
    assert alice_api.get("/api/v1/media/?kind=image").json()["count"] == 1
    media_delete(media=Media.objects.get(pk=ids[0]))
    assert alice_api.get("/api/v1/media/").json()["count"] == 3
    usage = alice_api.get("/api/v1/usage/").json()
    assert usage["by_kind"]["document"] == {"count": 2, "bytes": len(b"doc 1") + len(b"doc 2")}
    assert usage["by_kind"]["image"]["count"] == 1
    # The counters agree with the rows, place by place.
    real = {(m.kind, KindUsage.place_of(m)): 0 for m in Media.objects.filter(owner=alice)}
    for m in Media.objects.filter(owner=alice):
        real[(m.kind, KindUsage.place_of(m))] += 1
    counted = {(k.kind, k.place): k.count for k in KindUsage.objects.filter(owner=alice) if k.count}
    assert counted == real
    assert Media.objects.filter(pk=photo).exists()


def test_the_backfill_counts_every_place(alice, bob):
    from django.utils import timezone as tz

    bulk_media(alice, 3)
    Media.objects.create(owner=alice, original_filename="t.jpg", kind="image", size=7, sha256="a" * 64,
                         trashed_at=tz.now())
    Media.objects.create(owner=alice, original_filename="v.jpg", kind="image", size=5, sha256="b" * 64,
                         in_vault=True)
    Media.objects.create(owner=bob, original_filename="b.mp3", kind="audio", size=11, sha256="c" * 64)
    KindUsage.objects.all().delete()
    backfill(apps, None)
    got = {(str(k.owner_id), k.kind, k.place): (k.count, k.bytes) for k in KindUsage.objects.all()}
    assert got == {(str(alice.pk), "document", "library"): (3, 30), (str(alice.pk), "image", "trash"): (1, 7),
                   (str(alice.pk), "image", "vault"): (1, 5), (str(bob.pk), "audio", "library"): (1, 11)}
