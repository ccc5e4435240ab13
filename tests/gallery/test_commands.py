from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from gallery.models import Album, ApiKey, User

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_createuser_with_quota_and_favourites():
    run("createuser", "gina", "--password", "a-long-password", "--quota", "10GB")
    gina = User.objects.get(username="gina")
    assert gina.quota_bytes == 10 * 10**9
    assert gina.check_password("a-long-password")
    assert Album.objects.filter(owner=gina, is_favourites=True).count() == 1
    run("createuser", "hank", "--password", "a-long-password", "--quota", "500MB")
    assert User.objects.get(username="hank").quota_bytes == 500 * 10**6


@pytest.mark.parametrize("quota", ["lots", "10XB", "-5GB"])
def test_createuser_rejects_bad_sizes(quota):
    with pytest.raises(CommandError, match="size"):
        run("createuser", "ivan", "--password", "a-long-password", f"--quota={quota}")
    assert not User.objects.filter(username="ivan").exists()


def test_createuser_refuses_duplicates(alice):
    with pytest.raises(CommandError, match="already exists"):
        run("createuser", "alice", "--password", "another-password")


def test_apikey_create_prints_key_last_and_stores_only_hash(alice):
    out = run("apikey", "create", "alice", "--scopes", "media.read,media.read_write")
    raw = out.strip().splitlines()[-1]
    key = ApiKey.objects.get(user=alice)
    assert raw not in (key.hashed_secret, key.prefix) and key.prefix in raw
    assert sorted(key.scopes) == ["media.read", "media.read_write"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/media/").status_code == 200
    listed = run("apikey", "list", "alice")
    assert key.prefix in listed and raw not in listed
    run("apikey", "revoke", key.prefix)
    assert client.get("/api/v1/media/").status_code == 401


def test_apikey_rejects_unknown_scope(alice):
    with pytest.raises(CommandError, match="scopes"):
        run("apikey", "create", "alice", "--scopes", "media.everything")
    with pytest.raises(CommandError, match="no user"):
        run("apikey", "create", "nobody")


def test_favourites_exists_for_every_way_of_making_a_user(admin_client):
    from gallery.services.library import favourites_for

    # A user made by Django's manager alone (createsuperuser) gets it on first use.
    made = User.objects.create_user(username="from-code", password="whatever-123")
    first = favourites_for(user=made)
    assert favourites_for(user=made) == first
    assert Album.objects.filter(owner=made, is_favourites=True).count() == 1
    response = admin_client.post("/admin/gallery/user/add/", {
        "username": "from-admin", "password1": "Sup3r-secret-pw", "password2": "Sup3r-secret-pw",
        "usable_password": "true"})
    assert response.status_code == 302, response.content[:2000]
    assert Album.objects.filter(owner__username="from-admin", is_favourites=True).count() == 1


def test_favourites_cannot_be_deleted(alice):
    from gallery.exceptions import ProtectedAlbum
    from gallery.services.library import album_delete

    favourites = Album.objects.get(owner=alice, is_favourites=True)
    with pytest.raises(ProtectedAlbum):
        album_delete(album=favourites)
    assert Album.objects.filter(pk=favourites.pk).exists()


def test_admin_pages_render(admin_client, alice, alice_api, upload):
    upload(alice_api, name="x.txt", data=b"x")
    for url in ("/admin/gallery/user/", f"/admin/gallery/user/{alice.pk}/change/", "/admin/gallery/media/",
                "/admin/gallery/album/", "/admin/gallery/apikey/", "/admin/gallery/job/", "/admin/gallery/upload/"):
        assert admin_client.get(url).status_code == 200, url


def test_first_run_creates_admin_once_and_prints_its_login():
    from gallery.management.commands.run import Command

    first, second = io.StringIO(), io.StringIO()
    Command(stdout=first)._first_admin()
    Command(stdout=second)._first_admin()
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    password = first.getvalue().split("password")[1].split()[0]
    assert admin.check_password(password)
    assert second.getvalue() == ""
    assert Album.objects.filter(owner=admin, is_favourites=True).exists()


def test_createuser_plan_and_personal_quota(settings):
    run("createuser", "ida", "--password", "a-long-password", "--plan", "pro")
    ida = User.objects.get(username="ida")
    assert ida.plan == "pro" and ida.quota_bytes == 500 * 10**9 and ida.personal_quota_bytes is None
    run("createuser", "jo", "--password", "a-long-password", "--plan", "plus", "--quota", "1GB")
    jo = User.objects.get(username="jo")
    assert jo.plan == "plus" and jo.quota_bytes == 10**9  # the admin's quota wins over the plan's
    with pytest.raises(CommandError, match="no plan named"):
        run("createuser", "kim", "--password", "a-long-password", "--plan", "platinum")
    settings.QUOTA_PLANS = {**settings.QUOTA_PLANS, "pro": 2 * 10**12}
    assert User.objects.get(username="ida").quota_bytes == 2 * 10**12  # the quota follows the plan


def test_a_lowered_plan_blocks_uploads_and_deletes_nothing(settings, upload):
    from gallery.services.accounts import user_create, user_set_personal_quota, user_set_plan
    from tests.conftest import api_client

    settings.QUOTA_PLANS = {"free": 10, "plus": 1000}
    lee = user_create(username="lee", password="lee-password", plan="plus")
    client = api_client(lee)
    assert upload(client, name="a.txt", data=b"x" * 100).status_code == 201
    user_set_plan(user=lee, plan="free")
    refused = upload(client, name="b.txt", data=b"y")
    assert refused.status_code == 413 and refused.json()["error"] == "quota_exceeded"
    assert refused.json()["quota"] == 10 and refused.json()["used"] == 100
    assert lee.media.count() == 1
    user_set_personal_quota(user=lee, quota_bytes=500)
    assert upload(client, name="b.txt", data=b"y").status_code == 201


def test_admin_sets_the_plan(admin_client, alice):
    page = admin_client.get(f"/admin/gallery/user/{alice.pk}/change/")
    assert b'<option value="plus">plus (' in page.content
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and not isinstance(v, (list, tuple))}
    data.update({"plan": "pro", "personal_quota_bytes": "", "date_joined_0": "2024-01-01", "date_joined_1": "00:00:00",
                 "identities-TOTAL_FORMS": "0", "identities-INITIAL_FORMS": "0"})
    response = admin_client.post(f"/admin/gallery/user/{alice.pk}/change/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    alice.refresh_from_db()
    assert alice.plan == "pro" and alice.quota_bytes == 500 * 10**9
