"""One rule decides who may see a media, and every door asks it.

Every object URL is requested as the owner, a stranger and anonymously, and as the owner
for a trashed and a vault item: only the owner's visible media answer; everything else is
the same 404 an unknown id gets (anonymous API calls: 401, as for every API URL).
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from gallery.models import Media, Variant
from gallery.services.accounts import apikey_create
from tests.conftest import api_client

STATES = {"visible": {}, "trashed": {"trashed_at": timezone.now()}, "vault": {"in_vault": True}}


@pytest.fixture
def item(request, alice, upload, corpus):
    """Alice's processed photo, then put in the state the test names."""
    response = upload(api_client(alice), corpus / "jpg" / "Canon_40D.jpg")
    assert response.status_code == 201, response.content
    media = Media.objects.get(pk=response.json()["id"])
    assert media.status == Media.Status.READY and Variant.objects.filter(media=media, level="3s").exists()
    Media.objects.filter(pk=media.pk).update(**STATES[request.param])
    return Media.objects.get(pk=media.pk)


def callers(alice, charlie) -> dict[str, tuple[APIClient, Client]]:
    """(API client, browser client) for each caller; the browser ones carry a session."""
    def browser(user):
        client = Client()
        client.force_login(user)
        return client

    return {"owner": (api_client(alice), browser(alice)), "stranger": (api_client(charlie), browser(charlie)),
            "anonymous": (APIClient(), Client())}


def api_requests(media: Media) -> list[tuple[str, str]]:
    base = f"/api/v1/media/{media.pk}/"
    return [("get", base), ("post", base + "rotate-token/"), ("delete", base)]


def delivery_urls(media: Media) -> list[str]:
    return [f"/m/{media.token}/{level}/" for level in ("0", "1", "3s")]


@pytest.mark.parametrize("item", list(STATES), indirect=True)
@pytest.mark.parametrize("who", ["owner", "stranger", "anonymous"])
def test_every_object_url_follows_the_one_rule(item, who, alice, charlie):
    api, browser = callers(alice, charlie)[who]
    allowed = who == "owner" and item.in_vault is False and item.trashed_at is None
    # Delivery: the session and an API key go through the same authentication classes.
    key_client = Client(HTTP_AUTHORIZATION=api._credentials.get("HTTP_AUTHORIZATION", ""))
    for path in delivery_urls(item):
        for client in (browser, key_client):
            assert client.get(path).status_code == (200 if allowed else 404), (who, path)
            assert client.get(path, HTTP_RANGE="bytes=0-9").status_code == (206 if allowed else 404), (who, path)
    # The API, the destructive call last.
    for method, path in api_requests(item):
        status = getattr(api, method)(path).status_code
        expected = {"get": 200, "post": 200, "delete": 204}[method] if allowed else 404
        if who == "anonymous":
            expected = 401
        assert status == expected, (who, method, path, status)
    # DELETE moves to the trash: the owner's visible item is now trashed, nothing else changed.
    after = Media.objects.get(pk=item.pk)
    assert (after.trashed_at is not None) is (allowed or item.trashed_at is not None)
    assert after.in_vault is item.in_vault


@pytest.mark.parametrize("item", ["visible"], indirect=True)
def test_lists_and_lookups_show_only_what_the_rule_lets_through(item, alice, charlie):
    owner, stranger = api_client(alice), api_client(charlie)
    assert [m["id"] for m in owner.get("/api/v1/media/").json()["results"]] == [str(item.pk)]
    assert stranger.get("/api/v1/media/").json()["results"] == []
    sha = {"sha256": [item.sha256]}
    assert owner.post("/api/v1/media/exists", sha, format="json").json()["exists"] == [item.sha256]
    assert stranger.post("/api/v1/media/exists", sha, format="json").json()["exists"] == []
    assert stranger.get(f"/api/v1/media/?sha256={item.sha256}").json()["results"] == []
    for state in ("trashed", "vault"):
        Media.objects.filter(pk=item.pk).update(**{"trashed_at": None, "in_vault": False, **STATES[state]})
        assert owner.get("/api/v1/media/").json()["results"] == [], state
        assert owner.get(f"/api/v1/media/?sha256={item.sha256}").json()["results"] == [], state
        assert owner.post("/api/v1/media/exists", sha, format="json").json()["exists"] == [], state
        page = Client()
        page.force_login(alice)
        assert str(item.token) not in page.get("/").content.decode(), state


def test_a_revoked_key_reads_nothing_at_once(alice, upload, corpus):
    key, raw = apikey_create(user=alice, name="phone", scopes=["media.read"])
    response = upload(api_client(alice), corpus / "jpg" / "Canon_40D.jpg")
    media = Media.objects.get(pk=response.json()["id"])
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get(f"/m/{media.token}/0/").status_code == 200
    from gallery.services.accounts import apikey_revoke

    apikey_revoke(key=key)
    assert client.get(f"/m/{media.token}/0/").status_code == 404
    assert client.get(f"/api/v1/media/{media.pk}/").status_code == 401


# --- Share links: the rule's share half (Media.objects.shared_by) ------------------------------
def share_urls(share, media: Media) -> list[str]:
    return [f"/s/{share.token}/m/{media.token}/{level}/" for level in ("0", "1", "3s")]


@pytest.mark.parametrize("item", list(STATES), indirect=True)
@pytest.mark.parametrize("who", ["owner", "stranger", "anonymous"])
def test_share_urls_follow_the_one_rule(item, who, alice, charlie):
    from gallery.services.sharing import share_create, share_revoke

    _, browser = callers(alice, charlie)[who]
    share = share_create(owner=alice, media=item, allow_download=True)
    visible = item.in_vault is False and item.trashed_at is None
    for path in share_urls(share, item):
        # Whoever holds the link, logged in or not, gets what the share shows: never a trashed
        # or vault item.
        assert browser.get(path).status_code == (200 if visible else 404), (who, path)
    response = APIClient().get(f"/api/v1/shared/{share.token}/")
    assert [m["id"] for m in response.json()["results"]] == ([str(item.pk)] if visible else [])
    share_revoke(share=share)
    for path in share_urls(share, item):
        assert browser.get(path).status_code == 404, (who, path)
    assert APIClient().get(f"/api/v1/shared/{share.token}/").status_code == 404


@pytest.mark.parametrize("item", ["visible"], indirect=True)
def test_a_share_opens_nothing_else_of_the_owner(item, alice, upload, corpus):
    from gallery.services.sharing import share_create

    other = Media.objects.get(pk=upload(api_client(alice), corpus / "jpg" / "Nikon_D70.jpg").json()["id"])
    share = share_create(owner=alice, media=item)
    for path in share_urls(share, other):
        assert Client().get(path).status_code == 404, path
    # Nor does it open the owner's /m/ URLs or API for the holder of the link.
    assert Client().get(f"/m/{item.token}/3s/").status_code == 404
    assert APIClient().get(f"/api/v1/media/{item.pk}/").status_code == 401


def test_a_vault_item_is_visible_only_to_its_owners_unlocked_credential(alice, charlie, settings, corpus,
                                                                       django_capture_on_commit_callbacks):
    """The unlocked vault widens the one rule for the credential that unlocked it, on the
    delivery door only: the library's doors (object, lists, exists, ?sha256=) never show it."""
    from tests.vault_support import vault_open_for, vault_upload

    settings.VAULT_ARGON2_MEMORY_KIB, settings.VAULT_ARGON2_TIME_COST = 1024, 1
    owner = api_client(alice)
    vault_open_for(owner)
    response = vault_upload(owner, (corpus / "jpg" / "Canon_40D.jpg").read_bytes(), "v.jpg",
                            django_capture_on_commit_callbacks)
    assert response.status_code == 201
    item = response.json()
    media = Media.objects.get(pk=item["id"])
    assert set(Media.objects.visible_to(alice)) == set()
    unlocked_client = Client(HTTP_AUTHORIZATION=owner._credentials["HTTP_AUTHORIZATION"])
    browser = Client()
    browser.force_login(alice)
    others = {"owner's other key": Client(HTTP_AUTHORIZATION=api_client(alice)._credentials["HTTP_AUTHORIZATION"]),
              "owner's session": browser,
              "stranger": Client(HTTP_AUTHORIZATION=api_client(charlie)._credentials["HTTP_AUTHORIZATION"]),
              "anonymous": Client()}
    for path in delivery_urls(media):
        assert unlocked_client.get(path, HTTP_RANGE="bytes=0-9").status_code == 206, path
        for who, client in others.items():
            assert client.get(path).status_code == 404, (who, path)
    for method, path in api_requests(media):
        assert getattr(owner, method)(path).status_code == 404, (method, path)
    assert owner.get("/api/v1/media/").json()["results"] == []
    assert owner.get(f"/api/v1/media/?sha256={item['sha256']}").json()["results"] == []
    assert owner.get(f"/api/v1/media/?sha256={media.sha256}").json()["results"] == []
    assert owner.post("/api/v1/media/exists", {"sha256": [item["sha256"]]}, format="json").json()["exists"] == []
    assert str(media.token) not in browser.get("/").content.decode()
    # The session unlocks for itself (its vault cookie); a copy of the session without the cookie does not.
    from tests.vault_support import PASSPHRASE

    assert browser.post("/api/v1/vault/unlock", {"passphrase": PASSPHRASE},
                        content_type="application/json").status_code == 200
    cookieless = Client()
    cookieless.cookies["sessionid"] = browser.cookies["sessionid"].value
    for path in delivery_urls(media):
        assert browser.get(path, HTTP_RANGE="bytes=0-9").status_code == 206, path
        assert cookieless.get(path).status_code == 404, path
    owner.post("/api/v1/vault/lock")
    for path in delivery_urls(media):
        assert unlocked_client.get(path).status_code == 404, path
    assert browser.get(delivery_urls(media)[0]).status_code == 200  # each credential locks for itself
