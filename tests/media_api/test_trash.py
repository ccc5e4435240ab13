"""The trash: DELETE moves there, restore brings back, the purge (TRASH_DAYS later, or
"empty") deletes rows, variants and bytes and lowers used_bytes and the counters exactly."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.utils import timezone

from gallery import jobs, tasks
from gallery.models import Album, KindUsage, Media, User, Variant
from gallery.services.library import album_items_add
from gallery.services.trash import media_trash, trash_purge, trash_restore
from gallery.storage import media_storage
from tests.media_api.conftest import counters_exact, queries_of


def used(user) -> int:
    return User.objects.get(pk=user.pk).used_bytes


def test_delete_trashes_and_restore_brings_back(alice, alice_api, make_media):
    media = make_media(alice, 2, size=100)
    assert alice_api.delete(f"/api/v1/media/{media[0].pk}/").status_code == 204
    assert alice_api.get(f"/api/v1/media/{media[0].pk}/").status_code == 404
    assert [m["id"] for m in alice_api.get("/api/v1/media/").json()["results"]] == [str(media[1].pk)]
    trash = alice_api.get("/api/v1/trash/").json()
    assert trash["count"] == 1 and trash["results"][0]["id"] == str(media[0].pk)
    assert trash["results"][0]["trashed_at"] and trash["trash_days"] == 30
    usage = alice_api.get("/api/v1/usage/").json()
    assert usage["used"] == 200 and usage["trash"] == {"count": 1, "bytes": 100}
    assert usage["by_place"]["library"] == {"count": 1, "bytes": 100}
    assert counters_exact(alice)
    restored = alice_api.post("/api/v1/trash/restore", {"media": [str(media[0].pk)]}, format="json")
    assert restored.status_code == 200 and restored.json() == {"restored": [str(media[0].pk)]}
    assert alice_api.get("/api/v1/media/").json()["count"] == 2
    assert alice_api.get("/api/v1/trash/").json()["count"] == 0
    assert counters_exact(alice)


def test_restore_refuses_what_is_not_in_the_callers_trash(alice, charlie, alice_api, make_media):
    mine, live, theirs = make_media(alice)[0], make_media(alice)[0], make_media(charlie)[0]
    media_trash(media=mine)
    media_trash(media=theirs)
    for other in (live, theirs):
        response = alice_api.post("/api/v1/trash/restore", {"media": [str(mine.pk), str(other.pk)]}, format="json")
        assert response.status_code == 404 and response.json()["missing"] == [str(other.pk)]
    assert Media.objects.get(pk=mine.pk).trashed_at is not None  # all or nothing
    for body in ({"media": []}, {"media": ["x"]}, {}, {"media": [str(uuid.uuid4()) for _ in range(1001)]}):
        assert alice_api.post("/api/v1/trash/restore", body, format="json").status_code == 400


def test_delete_twice_and_strangers(alice, alice_api, charlie_api, make_media):
    media = make_media(alice)[0]
    assert charlie_api.delete(f"/api/v1/media/{media.pk}/").status_code == 404
    assert alice_api.delete(f"/api/v1/media/{media.pk}/").status_code == 204
    assert alice_api.delete(f"/api/v1/media/{media.pk}/").status_code == 404
    assert charlie_api.get("/api/v1/trash/").json()["count"] == 0


def test_the_purge_deletes_only_what_is_old_enough_and_lowers_usage_exactly(
        settings, storage, alice, bob, alice_api, upload, corpus, make_media, django_capture_on_commit_callbacks):
    settings.TRASH_DAYS = 30
    photo = Media.objects.get(pk=upload(alice_api, corpus / "jpg" / "Canon_40D.jpg").json()["id"])
    variant_keys = list(photo.variants.values_list("storage_key", flat=True))
    assert variant_keys
    old_doc, recent_doc, kept = make_media(alice, 3, size=1000)
    bobs = make_media(bob, 1, size=500)[0]
    album = Album.objects.create(owner=alice, title="A", cover=photo)
    album_items_add(album=album, media_ids=[photo.pk, kept.pk])
    for media in (photo, old_doc, recent_doc, bobs):
        media_trash(media=media)
    long_ago = timezone.now() - timedelta(days=31)
    Media.objects.filter(pk__in=[photo.pk, old_doc.pk, bobs.pk]).update(trashed_at=long_ago)
    before = used(alice)
    with django_capture_on_commit_callbacks(execute=True):
        assert trash_purge() == 3
    assert not Media.objects.filter(pk__in=[photo.pk, old_doc.pk, bobs.pk]).exists()
    assert set(Media.objects.filter(owner=alice).values_list("pk", flat=True)) == {recent_doc.pk, kept.pk}
    assert used(alice) == before - photo.size - 1000 and used(bob) == 0
    assert not Variant.objects.filter(media_id=photo.pk).exists()
    for key in [photo.original_key, old_doc.original_key, bobs.original_key, *variant_keys]:
        assert not media_storage().exists(key), key
    assert media_storage().exists(recent_doc.original_key)
    trash = KindUsage.objects.get(owner=alice, kind="document", place="trash")
    assert (trash.count, trash.bytes) == (1, 1000)
    assert KindUsage.objects.get(owner=alice, kind="image", place="trash").count == 0
    album.refresh_from_db()
    assert album.cover is None and list(album.media.all()) == [kept]
    assert counters_exact(alice) and counters_exact(bob)
    with django_capture_on_commit_callbacks(execute=True):
        assert trash_purge() == 0  # safe to run again


def test_a_restored_media_is_not_purged(alice, make_media):
    media = make_media(alice)[0]
    media_trash(media=media)
    trash_restore(owner=alice, media=[media.pk])
    assert trash_purge(before=timezone.now() + timedelta(days=1)) == 0
    assert Media.objects.filter(pk=media.pk, trashed_at__isnull=True).exists()


def test_empty_purges_the_callers_trash_now_and_nobody_elses(alice, bob, alice_api, make_media,
                                                             django_capture_on_commit_callbacks):
    mine, theirs = make_media(alice, 3, size=7), make_media(bob, 1, size=9)[0]
    for media in [*mine, theirs]:
        media_trash(media=media)
    with django_capture_on_commit_callbacks(execute=True):
        assert alice_api.post("/api/v1/trash/empty").json() == {"purged": 3}
    assert used(alice) == 0 and used(bob) == 9
    assert Media.objects.filter(pk=theirs.pk).exists()
    assert alice_api.get("/api/v1/usage/").json()["trash"] == {"count": 0, "bytes": 0}
    assert counters_exact(alice) and counters_exact(bob)


def test_the_worker_runs_the_purge_periodically(settings, alice, make_media):
    assert any(spec.name == "trash_purge" and spec.func is tasks.trash_purge for spec in jobs._PERIODIC)
    media = make_media(alice)[0]
    media_trash(media=media)
    Media.objects.filter(pk=media.pk).update(trashed_at=timezone.now() - timedelta(days=3))
    settings.TRASH_DAYS = 5
    tasks.trash_purge()
    assert Media.objects.filter(pk=media.pk).exists()
    settings.TRASH_DAYS = 2
    tasks.trash_purge()
    assert not Media.objects.filter(pk=media.pk).exists()


def test_trash_list_has_a_constant_number_of_queries(alice, alice_api, make_media):
    for media in make_media(alice, 2):
        media_trash(media=media)
    few = queries_of(lambda: alice_api.get("/api/v1/trash/"))
    for media in make_media(alice, 5):
        media_trash(media=media)
    many = queries_of(lambda: alice_api.get("/api/v1/trash/"))
    assert alice_api.get("/api/v1/trash/").json()["count"] == 7
    assert few == many
