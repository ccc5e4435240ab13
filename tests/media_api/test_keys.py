"""/api/v1/keys/: the signed-in person's API keys, managed from the web session only."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from gallery.models import ApiKey
from gallery.services.accounts import apikey_create

pytestmark = pytest.mark.django_db


def session(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_create_shows_the_secret_once_and_it_authenticates(alice):
    client = session(alice)
    made = client.post("/api/v1/keys/", {"name": "laptop", "scopes": ["media.read"]}, format="json")
    assert made.status_code == 201
    secret = made.json()["secret"]
    assert secret.startswith("chip_") and made.json()["scopes"] == ["media.read"]
    listed = client.get("/api/v1/keys/").json()["results"]
    assert [k["name"] for k in listed] == ["laptop"] and "secret" not in listed[0]
    assert secret not in str(listed)
    bearer = APIClient(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert bearer.get("/api/v1/me/").json()["auth"] == "api_key"
    assert bearer.post("/api/v1/keys/", {"name": "x", "scopes": ["media.read"]}, format="json").status_code == 403


def test_revoke_stops_the_key_and_others_keys_are_404(alice, bob):
    key, raw = apikey_create(user=alice, name="old", scopes=["media.read_write"])
    assert session(bob).delete(f"/api/v1/keys/{key.pk}/").status_code == 404
    assert APIClient(HTTP_AUTHORIZATION=f"Bearer {raw}").delete(f"/api/v1/keys/{key.pk}/").status_code == 403
    assert session(alice).delete(f"/api/v1/keys/{key.pk}/").status_code == 204
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    assert APIClient(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/v1/me/").status_code == 401


@pytest.mark.parametrize("body", [{}, {"name": "x"}, {"name": "x", "scopes": []}, {"name": "x", "scopes": ["admin"]},
                                  {"name": "", "scopes": ["media.read"]}, {"name": "x" * 101, "scopes": ["media.read"]}])
def test_bad_input_is_a_400_naming_the_field(alice, body):
    answer = session(alice).post("/api/v1/keys/", body, format="json")
    assert answer.status_code == 400 and answer.json()["error"] == "invalid"
    assert not ApiKey.objects.filter(user=alice).exists()


def test_anonymous_is_refused(db):
    assert APIClient().get("/api/v1/keys/").status_code in (401, 403)
