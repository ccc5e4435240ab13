"""Timeline buckets in the local time of capture, and a bucket's items; counts from the day
counters stay exact through every write; trashed and vault items never show."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from gallery.models import Media, TimelineDay
from gallery.services.edits import media_edit
from gallery.services.trash import media_trash, trash_purge, trash_restore
from tests.media_api.conftest import counters_exact, queries_of

UTC = timezone.utc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_buckets_by_month_and_day_in_the_local_time_of_capture(alice, alice_api, make_media):
    # No offset known (an estimated date): the owner's zone decides; alice is in Europe/Paris.
    late_may_utc = make_media(alice, when=datetime(2024, 5, 31, 22, 30, tzinfo=UTC))[0]
    assert str(Media.objects.get(pk=late_may_utc.pk).taken_day) == "2024-06-01"
    a, b, c = make_media(alice, 3)
    media_edit(media=a, taken_at=at("2024-05-17T10:00:00+09:00"))
    media_edit(media=b, taken_at=at("2024-05-17T23:30:00-04:00"))  # 2024-05-18 in UTC
    media_edit(media=c, taken_at=at("2023-12-31T23:59:00+00:00"))
    months = alice_api.get("/api/v1/timeline/buckets/?size=month").json()
    assert months == {"buckets": [{"bucket": "2024-06", "count": 1}, {"bucket": "2024-05", "count": 2},
                                  {"bucket": "2023-12", "count": 1}]}
    days = alice_api.get("/api/v1/timeline/buckets/?size=day").json()["buckets"]
    assert days == [{"bucket": "2024-06-01", "count": 1}, {"bucket": "2024-05-17", "count": 2},
                    {"bucket": "2023-12-31", "count": 1}]
    assert alice_api.get("/api/v1/timeline/buckets/").json() == months  # month by default


def test_a_buckets_items_newest_first_with_the_total(alice, alice_api, make_media):
    media = make_media(alice, 5)
    for i, m in enumerate(media):
        media_edit(media=m, taken_at=at(f"2024-05-{10 + i}T12:00:00+02:00"))
    page = alice_api.get("/api/v1/media/?bucket=2024-05&page_size=2").json()
    assert page["count"] == 5 and [m["id"] for m in page["results"]] == [str(media[4].pk), str(media[3].pk)]
    rest = alice_api.get(page["next"]).json()
    assert [m["id"] for m in rest["results"]] == [str(media[2].pk), str(media[1].pk)]
    day = alice_api.get("/api/v1/media/?bucket=2024-05-11").json()
    assert day["count"] == 1 and day["results"][0]["id"] == str(media[1].pk)
    assert alice_api.get("/api/v1/media/?bucket=2024-04").json() == {"count": 0, "next": None, "previous": None,
                                                                      "results": []}
    assert alice_api.get("/api/v1/media/?bucket=2024-05&kind=document").json()["count"] == 5
    assert alice_api.get("/api/v1/media/?bucket=2024-05&kind=image").json()["count"] == 0


def test_bad_buckets_are_400(alice_api):
    for bucket in ("2024-13", "2024-02-30", "2024", "may", "2024-5", "2024-05-01T00", "٢٠٢٤-٠٥"):
        response = alice_api.get(f"/api/v1/media/?bucket={bucket}")
        assert response.status_code == 400 and "bucket" in response.json()["fields"], bucket
    response = alice_api.get("/api/v1/timeline/buckets/?size=year")
    assert response.status_code == 400 and response.json()["error"] == "invalid"


def test_trashed_vault_and_others_media_are_not_in_buckets(alice, charlie, alice_api, make_media):
    when = datetime(2022, 3, 3, 12, tzinfo=UTC)
    keep, trashed, vaulted = make_media(alice, 3, when=when)
    make_media(charlie, 2, when=when)
    media_trash(media=trashed)
    Media.objects.filter(pk=vaulted.pk).update(in_vault=True)
    buckets = alice_api.get("/api/v1/timeline/buckets/").json()["buckets"]
    # The vault row was moved without its service (the vault is not built yet): the counter
    # still counts it, but the bucket's items never show it.
    items = alice_api.get("/api/v1/media/?bucket=2022-03").json()["results"]
    assert [m["id"] for m in items] == [str(keep.pk)]
    assert buckets[0]["bucket"] == "2022-03"
    trash_restore(owner=alice, media=[trashed.pk])
    assert len(alice_api.get("/api/v1/media/?bucket=2022-03").json()["results"]) == 2


def test_counters_stay_exact_through_every_write(alice, alice_api, make_media, django_capture_on_commit_callbacks):
    media = make_media(alice, 6, when=datetime(2021, 1, 1, tzinfo=UTC))
    media_edit(media=media[0], taken_at=at("2020-02-02T02:02:00+01:00"))
    media_edit(media=media[1], taken_at=at("2020-02-02T02:02:00+01:00"))
    media_edit(media=media[1], taken_at=at("2020-02-03T02:02:00+01:00"))
    media_trash(media=media[2])
    media_trash(media=media[3])
    trash_restore(owner=alice, media=[media[3].pk])
    media_trash(media=media[4])
    with django_capture_on_commit_callbacks(execute=True):
        trash_purge(before=datetime.now(UTC) + timedelta(days=1))
    assert counters_exact(alice)
    days = dict(TimelineDay.objects.filter(owner=alice, count__gt=0).values_list("day", "count"))
    assert days == {date(2020, 2, 2): 1, date(2020, 2, 3): 1, date(2021, 1, 1): 2}


def test_buckets_and_bucket_pages_have_a_constant_number_of_queries(alice, alice_api, make_media):
    media = make_media(alice, 2)
    media_edit(media=media[0], taken_at=at("2024-05-01T12:00:00+00:00"))
    few = queries_of(lambda: alice_api.get("/api/v1/timeline/buckets/?size=day"))
    few_page = queries_of(lambda: alice_api.get("/api/v1/media/?bucket=2024-05"))
    for i, m in enumerate(make_media(alice, 8)):
        media_edit(media=m, taken_at=at(f"2024-05-{2 + i:02d}T12:00:00+00:00"))
    assert len(alice_api.get("/api/v1/timeline/buckets/?size=day").json()["buckets"]) == 10
    assert queries_of(lambda: alice_api.get("/api/v1/timeline/buckets/?size=day")) == few
    assert queries_of(lambda: alice_api.get("/api/v1/media/?bucket=2024-05")) == few_page
