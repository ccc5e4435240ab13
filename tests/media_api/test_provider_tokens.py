"""Access tokens from the OpenID provider on /api/v1/ and /m/, next to API keys and sessions.

The provider is real (tests/oidc_provider, its own process); tokens are obtained the way a
phone app does (authorization code + PKCE with the public client) and checked by Chipmunk
through introspection (+ userinfo for the sub) or, with OIDC_ACCESS_TOKEN_JWT, the JWKS.
"""

from __future__ import annotations

import time

import jwt
import pytest
from django.test import Client
from rest_framework.test import APIClient

from gallery.models import Identity, Media, User
from gallery.services.accounts import user_create
from tests.conftest import free_port

READ = "openid profile email media.read"
READ_WRITE = "openid profile email media.read_write"

pytestmark = pytest.mark.django_db


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_a_read_token_reads_and_may_not_write(oidc, upload):
    client = bearer(oidc.phone_token("dana", READ))
    me = client.get("/api/v1/me/")
    assert me.status_code == 200
    body = me.json()
    # The first use of a token for an unknown sub made the account by the web login's rules.
    assert body["username"] == "dana" and body["email"] == "dana@example.org" and body["name"] == "Dana Scully"
    assert body["plan"] == "plus" and body["quota"] == 150 * 10**9 and body["used"] == 0
    assert body["auth"] == "oidc" and body["scopes"] == ["media.read"]
    assert set(body) == {"id", "username", "email", "name", "plan", "quota", "used", "time_zone", "auth", "scopes"}
    dana = User.objects.get(username="dana")
    assert Identity.objects.get(user=dana).issuer == oidc.issuer
    assert client.get("/api/v1/media/").status_code == 200
    refused = upload(client, name="r.txt", data=b"r")
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"
    assert not Media.objects.filter(owner=dana).exists()


def test_a_read_write_token_writes_and_reads_bytes_at_m(oidc, upload):
    client = bearer(oidc.phone_token("erin", READ_WRITE))
    created = upload(client, name="w.txt", data=b"written by a phone")
    assert created.status_code == 201, created.content
    media = Media.objects.get(pk=created.json()["id"])
    assert media.owner.username == "erin" and media.owner.plan == "pro"
    reader = oidc.phone_token("erin", READ)
    got = Client().get(f"/m/{media.token}/0/", HTTP_AUTHORIZATION=f"Bearer {reader}")
    assert got.status_code == 200 and b"".join(got.streaming_content) == b"written by a phone"
    # Someone else's token sees nothing of it.
    other = oidc.phone_token("dana", READ_WRITE)
    assert Client().get(f"/m/{media.token}/0/", HTTP_AUTHORIZATION=f"Bearer {other}").status_code == 404
    assert client.delete(f"/api/v1/media/{media.pk}/").status_code == 204


def test_a_token_without_media_scopes_gets_403_and_no_bytes(oidc, alice):
    token = oidc.phone_token("dana", "openid profile email")
    response = bearer(token).get("/api/v1/media/")
    assert response.status_code == 403 and response.json()["error"] == "insufficient_scope"
    media = Media.objects.create(owner=User.objects.get(username="dana"), original_filename="x.txt", size=1,
                                 sha256="0" * 64, original_key="k", status=Media.Status.READY)
    assert Client().get(f"/m/{media.token}/0/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 404


def test_unknown_revoked_and_expired_tokens_get_401(oidc):
    assert bearer("not-a-token-anyone-issued").get("/api/v1/media/").status_code == 401
    revoked = oidc.phone_token("dana", READ)
    import requests

    assert requests.post(f"{oidc.issuer}/revoke_token/", data={"token": revoked, "client_id": "chipmunk-phone"},
                         timeout=30).status_code == 200
    response = bearer(revoked).get("/api/v1/media/")
    assert response.status_code == 401 and response.json()["error"] == "not_authenticated"
    expired = oidc.phone_token("dana", READ)
    oidc.sql("UPDATE oauth2_provider_accesstoken SET expires = '2000-01-01 00:00:00' WHERE token = ?", expired)
    assert bearer(expired).get("/api/v1/media/").status_code == 401


def test_a_deactivated_user_token_gets_401(oidc):
    token = oidc.phone_token("gus", READ)
    assert bearer(token).get("/api/v1/me/").status_code == 200
    User.objects.filter(username="gus").update(is_active=False)
    assert bearer(token).get("/api/v1/me/").status_code == 401


def test_api_keys_still_work_next_to_tokens(oidc, alice_api):
    me = alice_api.get("/api/v1/me/").json()
    assert me["auth"] == "api_key" and me["username"] == "alice" and me["plan"] == "free"


def test_a_token_does_not_take_over_a_local_account_by_email(oidc):
    frank = user_create(username="frank", password="frank-password", email="frank@example.org")
    token = oidc.phone_token("frank", READ)
    me = bearer(token).get("/api/v1/me/").json()
    assert me["username"] == "frank-2" and me["id"] != str(frank.pk)


def test_provider_down_is_503_not_500(oidc, settings):
    from gallery import identity

    token = oidc.phone_token("dana", READ)
    settings.OIDC_ISSUER_URL = f"http://127.0.0.1:{free_port()}/o"
    identity.forget()
    response = bearer(token).get("/api/v1/media/")
    assert response.status_code == 503 and response.json()["error"] == "provider_unavailable"


# --- JWT access tokens verified against the provider's keys ------------------------------
@pytest.fixture
def jwt_mode(oidc, settings):
    settings.OIDC_ACCESS_TOKEN_JWT = True
    return oidc


def test_jwt_access_tokens_are_checked_against_the_jwks(jwt_mode, settings):
    token = jwt_mode.phone_token("dana", READ)
    me = bearer(token).get("/api/v1/me/")
    assert me.status_code == 200 and me.json()["auth"] == "oidc" and me.json()["scopes"] == ["media.read"]
    settings.OIDC_ACCESS_TOKEN_AUDIENCE = "another-api"
    fresh = jwt_mode.phone_token("dana", READ)  # not in the cache
    assert bearer(fresh).get("/api/v1/me/").status_code == 401


def test_jwt_with_a_bad_signature_wrong_issuer_or_expired_gets_401(jwt_mode):
    token = jwt_mode.phone_token("dana", READ_WRITE)
    claims = jwt.decode(token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt_mode.private_key_pem

    def signed(**changes) -> str:
        return jwt.encode({**claims, **changes}, key, algorithm="RS256", headers={"kid": kid})

    # The real token makes the account (through userinfo); a token we sign with the provider's
    # key is then accepted for it: the checks below fail for their own reason, not the key.
    assert bearer(token).get("/api/v1/me/").status_code == 200
    assert bearer(signed(jti="fresh")).get("/api/v1/me/").status_code == 200
    header, payload, signature = token.split(".")
    tampered = f"{header}.{signed(sub='999').split('.')[1]}.{signature}"
    assert bearer(tampered).get("/api/v1/me/").status_code == 401
    assert bearer(signed(iss="http://evil.example/o")).get("/api/v1/me/").status_code == 401
    assert bearer(signed(exp=int(time.time()) - 3600)).get("/api/v1/me/").status_code == 401
    from cryptography.hazmat.primitives.asymmetric import rsa

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({**claims, "jti": "forged"}, stranger, algorithm="RS256", headers={"kid": kid})
    assert bearer(forged).get("/api/v1/me/").status_code == 401
    unsigned = jwt.encode({**claims, "jti": "none"}, None, algorithm="none")
    assert bearer(unsigned).get("/api/v1/me/").status_code == 401
