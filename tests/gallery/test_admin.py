"""The admin: columns, filters, actions, the staff-only thumbnail view, and a constant number of
queries per changelist whatever the number of rows."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gallery.admin import paging
from gallery.models import Identity, Job, KindUsage, Media, Upload, User
from gallery.services.media import media_record
from gallery.storage import media_storage, original_key
from gallery.uploads.lifecycle import upload_expiry

pytestmark = pytest.mark.django_db


def stored(owner, data: bytes, filename: str = "file.txt", **fields) -> Media:
    media_id = uuid.uuid4()
    key = media_storage().save(original_key(user_id=owner.pk, media_id=media_id, filename=filename), ContentFile(data))
    media = media_record(owner=owner, media_id=media_id, key=key, size=len(data),
                         sha256=hashlib.sha256(data).hexdigest(), filename=filename, content_type=None,
                         status=Media.Status.READY).media
    if fields:
        Media.objects.filter(pk=media.pk).update(**fields)
    return media


@pytest.fixture
def staff(db) -> Client:
    user = User.objects.create_superuser(username="root", password="root-password-123")
    client = Client()
    client.force_login(user)
    return client


def queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return len(captured)


MEDIA_LISTS = [
    "/admin/gallery/media/",
    "/admin/gallery/media/?kind__exact=document",
    "/admin/gallery/media/?status__exact=ready&trashed=no",
    "/admin/gallery/media/?q=file",
    "/admin/gallery/media/?taken_at__year=2020",
    "/admin/gallery/media/?in_vault__exact=0&o=-6",
]


def test_every_changelist_makes_a_constant_number_of_queries(staff, alice, bob, settings):
    settings.JOBS_MODE = "queue"

    def grow(n: int) -> None:
        for i in range(n):
            owner = alice if i % 2 else bob
            stored(owner, f"{owner.username} {i} {uuid.uuid4()}".encode(), f"file{i}.txt",
                   taken_at=timezone.now().replace(year=2020) - timedelta(days=i))
            Upload.objects.create(owner=owner, length=100, offset=i, filename=f"u{i}.jpg", target_key=f"t{i}",
                                  expires_at=upload_expiry())
            Identity.objects.create(user=owner, issuer="https://id.example.org", subject=str(uuid.uuid4()))
        for i in range(n):
            User.objects.create_user(username=f"user{uuid.uuid4().hex[:8]}", password="x-long-password")

    urls = [*MEDIA_LISTS, f"/admin/gallery/media/?owner__id__exact={alice.pk}", "/admin/gallery/user/",
            "/admin/gallery/job/", "/admin/gallery/job/?state__exact=queued", "/admin/gallery/upload/",
            "/admin/gallery/album/", "/admin/gallery/export/", "/admin/gallery/apikey/"]
    grow(3)
    small = {url: queries(staff, url) for url in urls}
    grow(30)
    large = {url: queries(staff, url) for url in urls}
    assert large == small


def test_media_list_shows_the_columns_and_counts_from_the_counters(staff, alice, alice_api, upload, corpus):
    assert upload(alice_api, corpus / "jpg" / "Canon_40D.jpg").status_code == 201
    photo = Media.objects.get(owner=alice)
    Media.objects.filter(pk=photo.pk).update(place_city="Paris", place_country="France")
    page = staff.get("/admin/gallery/media/").content.decode()
    thumb = f"/admin/gallery/media/{photo.pk}/thumbnail/"
    assert thumb in page and "Paris, France" in page and "alice" in page and "1 media" in page
    detail = staff.get(f"/admin/gallery/media/{photo.pk}/change/").content.decode()
    assert "Canon EOS 40D" in detail  # the EXIF, read-only
    assert "3s" in detail and "webp" in detail  # the variants
    assert 'name="original_filename"' not in detail  # nothing editable

    got = staff.get(thumb)
    assert got.status_code == 200 and got["Content-Type"] == "image/webp"
    assert b"".join(got.streaming_content)[:4] == b"RIFF"
    assert staff.get(thumb + "?level=4").status_code == 200


def test_the_thumbnail_view_is_for_staff_only(alice, alice_api, upload, corpus, staff):
    assert upload(alice_api, corpus / "jpg" / "Nikon_D70.jpg").status_code == 201
    photo = Media.objects.get(owner=alice)
    thumb = f"/admin/gallery/media/{photo.pk}/thumbnail/"
    owner = Client()
    owner.force_login(alice)
    assert owner.get(thumb).status_code == 302  # to the admin login
    assert Client().get(thumb).status_code == 302
    Media.objects.filter(pk=photo.pk).update(in_vault=True)
    assert staff.get(thumb).status_code == 404  # vault items are never shown


def test_media_actions(staff, alice, settings):
    settings.JOBS_MODE = "queue"
    one, two = stored(alice, b"one"), stored(alice, b"two")
    Job.objects.all().delete()
    ids = [str(one.pk), str(two.pk)]
    staff.post("/admin/gallery/media/", {"action": "reprocess", "_selected_action": ids})
    assert Job.objects.filter(name="process_media", state="queued").count() == 2
    staff.post("/admin/gallery/media/", {"action": "trash", "_selected_action": [str(one.pk)]})
    one.refresh_from_db()
    assert one.trashed_at is not None
    usage = {(u.place, u.kind): u.count for u in KindUsage.objects.filter(owner=alice)}
    assert usage == {("library", "document"): 1, ("trash", "document"): 1}
    page = staff.get("/admin/gallery/media/?trashed=yes&in_vault__exact=0").content.decode()
    assert "1 media" in page


def test_user_list_and_actions(staff, alice, bob, settings):
    stored(alice, b"x" * 2048, "a.txt")
    Identity.objects.create(user=alice, issuer="https://id.example.org/realms/x", subject="s-1")
    page = staff.get("/admin/gallery/user/").content.decode()
    assert "id.example.org" in page and "document: 2.0\xa0KB" in page and "2.0\xa0KB of 9.3\xa0GB" in page
    staff.post("/admin/gallery/user/", {"action": "deactivate", "_selected_action": [str(alice.pk)]})
    staff.post("/admin/gallery/user/", {"action": "reset_quota", "_selected_action": [str(bob.pk)]})
    alice.refresh_from_db()
    bob.refresh_from_db()
    assert not alice.is_active and bob.personal_quota_bytes is None
    assert bob.quota_bytes == settings.QUOTA_PLANS[bob.plan]


def test_job_actions(staff, alice, settings):
    settings.JOBS_MODE = "queue"
    media = stored(alice, b"pending", status="pending")
    queued = Job.objects.create(name="process_media", payload={"media_id": str(media.pk)})
    failed = Job.objects.create(name="process_media", payload={"media_id": str(media.pk)}, state="failed",
                                attempts=3, last_error="Boom: it broke\ntraceback")
    page = staff.get("/admin/gallery/job/").content.decode()
    assert "Boom: it broke" in page and "3/3" in page
    staff.post("/admin/gallery/job/", {"action": "retry", "_selected_action": [str(failed.pk), str(queued.pk)]})
    failed.refresh_from_db()
    assert failed.state == "queued" and failed.attempts == 0
    staff.post("/admin/gallery/job/", {"action": "cancel", "_selected_action": [str(queued.pk)]})
    queued.refresh_from_db()
    media.refresh_from_db()
    assert queued.state == "failed" and "cancelled by root" in queued.last_error
    assert media.status == "failed"  # nothing waits for a cancelled job


def test_upload_list_shows_active_ones_and_expires_them(staff, alice):
    User.objects.filter(pk=alice.pk).update(reserved_bytes=300)
    live = Upload.objects.create(owner=alice, length=100, offset=40, filename="live.jpg", target_key="t1",
                                 expires_at=upload_expiry())
    busy = Upload.objects.create(owner=alice, length=200, offset=10, filename="busy.jpg", target_key="t2",
                                 expires_at=upload_expiry(), lease_until=timezone.now() + timedelta(minutes=1))
    Upload.objects.create(owner=alice, length=5, offset=5, filename="done.jpg", target_key="t3", state="completed",
                          expires_at=upload_expiry())
    page = staff.get("/admin/gallery/upload/").content.decode()
    assert "live.jpg" in page and "busy.jpg" in page and "done.jpg" not in page
    assert "40\xa0bytes of 100\xa0bytes (40%)" in page
    assert "done.jpg" in staff.get("/admin/gallery/upload/?state=all").content.decode()
    staff.post("/admin/gallery/upload/", {"action": "expire", "_selected_action": [str(live.pk), str(busy.pk)]})
    live.refresh_from_db()
    busy.refresh_from_db()
    alice.refresh_from_db()
    assert live.state == "expired" and busy.state == "active" and alice.reserved_bytes == 200


def test_large_results_are_counted_up_to_a_cap(staff, alice, monkeypatch):
    monkeypatch.setattr(paging, "CAP", 3)
    for i in range(5):
        stored(alice, f"n{i}".encode(), f"note{i}.txt")
    assert "5 media" in staff.get("/admin/gallery/media/").content.decode()  # the counters: exact
    page = staff.get("/admin/gallery/media/?q=note").content.decode()
    assert "3+ media" in page and "note4.txt" in page
    assert "1 media" in staff.get("/admin/gallery/media/?q=note1").content.decode()


def test_date_hierarchy_lists_only_periods_with_media(staff, alice):
    for when in ("2019-07-14T10:00:00Z", "2019-09-01T23:30:00Z", "2021-01-05T08:00:00Z"):
        stored(alice, when.encode(), taken_at=when)
    page = staff.get("/admin/gallery/media/").content.decode()
    assert "taken_at__year=2019" in page and "taken_at__year=2021" in page and "taken_at__year=2020" not in page
    months = staff.get("/admin/gallery/media/?taken_at__year=2019").content.decode()
    assert "taken_at__month=7" in months and "taken_at__month=9" in months and "taken_at__month=8" not in months
    days = staff.get("/admin/gallery/media/?taken_at__year=2019&taken_at__month=9").content.decode()
    assert "taken_at__day=1" in days and "taken_at__day=2" not in days
    # The same answer as Django's own DISTINCT over every row.
    from gallery.admin.media import AdminMediaQuerySet

    probed = AdminMediaQuerySet(model=Media).datetimes("taken_at", "month")
    assert probed == list(Media.objects.datetimes("taken_at", "month"))


def test_search_by_name_sha256_or_owner(staff, alice, bob):
    one = stored(alice, b"one", "holiday.jpg")
    two = stored(bob, b"two", "work.pdf")
    page = staff.get("/admin/gallery/media/?q=HOLI").content.decode()
    assert "holiday.jpg" in page and "work.pdf" not in page
    page = staff.get(f"/admin/gallery/media/?q={two.sha256.upper()}").content.decode()
    assert "work.pdf" in page and "holiday.jpg" not in page
    page = staff.get("/admin/gallery/media/?q=bo").content.decode()
    assert "work.pdf" in page and "holiday.jpg" not in page
    assert "taken_at__year" not in page  # no date hierarchy while searching
    assert one.sha256 not in staff.get("/admin/gallery/media/?q=nothing-like-it").content.decode()
