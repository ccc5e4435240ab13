"""Web login through a real OpenID provider (tests/oidc_provider), driven with an HTTP client
against a live Chipmunk: the authorization-code flow, accounts and plans, logout, and every
failure mode as a page with a clear message.
"""

from __future__ import annotations

import re
import urllib.parse

import pytest
import requests

from gallery import identity
from gallery.models import Identity, User
from gallery.services.accounts import user_create, user_set_plan
from tests.conftest import free_port
from tests.gallery.test_browser import server  # noqa: F401  (uvicorn on the test database, for Chromium)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def chipmunk(live_server, oidc):
    oidc.allow(live_server.url)
    return live_server.url


def start(base: str) -> tuple[requests.Session, requests.Response]:
    """Click "Sign in with …": returns the browser and the provider's login page."""
    http = requests.Session()
    page = http.get(f"{base}/login/", timeout=30)
    link = re.search(r'id="oidc-login" href="([^"]+)"', page.text).group(1)
    return http, http.get(urllib.parse.urljoin(base, link), timeout=30)


def cookie(http: requests.Session, name: str) -> str | None:
    """Chipmunk's cookie of that name (the provider's have names of their own)."""
    return next((c.value for c in http.cookies if c.name == name), None)


def log_in(base: str, provider, username: str) -> tuple[requests.Session, requests.Response]:
    http, login_page = start(base)
    return http, provider.log_in_at_provider(http, login_page, username)


def test_the_login_page_offers_the_provider_and_can_hide_the_password_form(client, settings, oidc):
    page = client.get("/login/").content.decode()
    assert "Sign in with Test ID" in page and 'name="password"' in page
    settings.LOCAL_LOGIN = False
    page = client.get("/login/").content.decode()
    assert "Sign in with Test ID" in page and 'name="password"' not in page
    settings.OIDC_ISSUER_URL = ""
    settings.LOCAL_LOGIN = True
    assert "Sign in with" not in client.get("/login/").content.decode()


def test_first_login_lands_in_an_empty_timeline_with_the_plan_of_the_group(chipmunk, oidc):
    http, start_page = start(chipmunk)
    before = cookie(http, "sessionid")
    landed = oidc.log_in_at_provider(http, start_page, "dana")
    assert landed.status_code == 200 and landed.url == f"{chipmunk}/"
    assert "Nothing here yet" in landed.text and "dana" in landed.text
    after = cookie(http, "sessionid")
    assert before and after and before != after  # the session was rotated at login
    dana = User.objects.get(username="dana")
    assert (dana.email, dana.first_name, dana.last_name) == ("dana@example.org", "Dana", "Scully")
    assert dana.plan == "plus" and dana.quota_bytes == 150 * 10**9  # groups: staff, plus
    assert not dana.has_usable_password()
    assert Identity.objects.get(user=dana).issuer == oidc.issuer
    me = http.get(f"{chipmunk}/api/v1/me/", timeout=30).json()
    assert me["auth"] == "session" and me["plan"] == "plus" and me["username"] == "dana"


def test_the_plan_follows_the_group_at_each_login_and_accounts_are_linked_by_sub(chipmunk, oidc):
    log_in(chipmunk, oidc, "erin")
    erin = User.objects.get(username="erin")
    assert erin.plan == "pro"
    user_set_plan(user=erin, plan="free")
    log_in(chipmunk, oidc, "erin")
    assert User.objects.filter(email="erin@example.org").count() == 1
    assert User.objects.get(pk=erin.pk).plan == "pro"


def test_a_local_account_with_the_same_name_or_email_is_not_taken_over(chipmunk, oidc):
    local = user_create(username="frank", password="frank-password", email="frank@example.org")
    log_in(chipmunk, oidc, "frank")
    linked = Identity.objects.get().user
    assert linked.pk != local.pk and linked.username == "frank-2"


def test_link_by_verified_email_when_allowed(chipmunk, oidc, settings):
    settings.OIDC_LINK_BY_EMAIL = True
    local = user_create(username="franky", password="frank-password", email="frank@example.org")
    log_in(chipmunk, oidc, "frank")
    assert Identity.objects.get(user=local).issuer == oidc.issuer
    # The provider does not vouch for this one's address: a new account, never the local one.
    log_in(chipmunk, oidc, "unverified-frank")
    assert Identity.objects.exclude(user=local).get().user.username == "unverified-frank"
    assert Identity.objects.filter(user=local).count() == 1


def test_a_deactivated_user_cannot_log_in_through_the_provider(chipmunk, oidc):
    log_in(chipmunk, oidc, "gus")
    User.objects.filter(username="gus").update(is_active=False)
    http, page = log_in(chipmunk, oidc, "gus")
    assert page.status_code == 403 and "deactivated" in page.text
    assert http.get(f"{chipmunk}/api/v1/me/", timeout=30).status_code == 401


def test_logout_ends_the_provider_session_too(chipmunk, oidc):
    http, landed = log_in(chipmunk, oidc, "hana")
    csrf = cookie(http, "csrftoken")
    out = http.post(f"{chipmunk}/logout/", data={"csrfmiddlewaretoken": csrf}, headers={"Referer": chipmunk},
                    allow_redirects=False, timeout=30)
    assert out.status_code == 302 and out.headers["Location"].startswith(f"{oidc.issuer}/logout/")
    assert "id_token_hint=" in out.headers["Location"]
    back = http.get(out.headers["Location"], timeout=30)
    assert back.url == f"{chipmunk}/login/"
    # Signed out at the provider as well: signing in again asks for the password.
    again = http.get(f"{chipmunk}/oidc/authenticate/", timeout=30)
    assert 'id="provider-login"' in again.text


# --- Failure modes: a page that says what happened, never a 500 ---------------------------
def test_provider_down_at_the_start(chipmunk, settings):
    settings.OIDC_ISSUER_URL = f"http://127.0.0.1:{free_port()}/o"
    identity.forget()
    http, page = start(chipmunk)
    assert page.status_code == 503 and "Test ID cannot be reached" in page.text


def test_provider_down_at_the_callback(chipmunk, oidc, settings):
    http, login_page = start(chipmunk)
    response = oidc.log_in_at_provider(http, login_page, "dana", follow=False)
    while "/oidc/callback/" not in response.headers["Location"]:
        response = http.get(urllib.parse.urljoin(response.url, response.headers["Location"]), allow_redirects=False)
    settings.OIDC_ISSUER_URL = f"http://127.0.0.1:{free_port()}/o"
    identity.forget()
    page = http.get(response.headers["Location"], timeout=30)
    assert page.status_code == 503 and "cannot be reached" in page.text
    assert not User.objects.filter(username="dana").exists()


def test_state_mismatch(chipmunk, oidc):
    http, login_page = start(chipmunk)
    response = oidc.log_in_at_provider(http, login_page, "dana", follow=False)
    while "/oidc/callback/" not in response.headers["Location"]:
        response = http.get(urllib.parse.urljoin(response.url, response.headers["Location"]), allow_redirects=False)
    forged = re.sub(r"state=[^&]+", "state=not-the-one-we-sent", response.headers["Location"])
    page = http.get(forged, timeout=30)
    assert page.status_code == 400 and "does not match one started in this browser" in page.text
    # Another browser (no session) bringing the right URL is refused too.
    page = requests.get(response.headers["Location"], timeout=30)
    assert page.status_code == 400 and "does not match" in page.text


def test_expired_code(chipmunk, oidc):
    http, login_page = start(chipmunk)
    response = oidc.log_in_at_provider(http, login_page, "dana", follow=False)
    while "/oidc/callback/" not in response.headers["Location"]:
        response = http.get(urllib.parse.urljoin(response.url, response.headers["Location"]), allow_redirects=False)
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(response.headers["Location"]).query)["code"][0]
    oidc.sql("UPDATE oauth2_provider_grant SET expires = '2000-01-01 00:00:00' WHERE code = ?", code)
    page = http.get(response.headers["Location"], timeout=30)
    assert page.status_code == 400 and "sign-in code has expired" in page.text
    assert not User.objects.filter(username="dana").exists()


def test_provider_refuses_the_login(chipmunk):
    page = requests.get(f"{chipmunk}/oidc/callback/?error=access_denied&error_description=Not+today&state=x",
                        timeout=30)
    assert page.status_code == 400 and "did not sign you in: Not today" in page.text


@pytest.mark.parametrize("client_id,reason", [
    ("chipmunk-bad-sig", "signature is not valid"),
    ("chipmunk-wrong-aud", "meant for another audience"),
    ("chipmunk-wrong-iss", "comes from another issuer"),
])
def test_id_tokens_that_cannot_be_trusted(chipmunk, oidc, settings, client_id, reason):
    settings.OIDC_CLIENT_ID = client_id
    http, page = log_in(chipmunk, oidc, "dana")
    assert page.status_code == 400 and reason in page.text and "You have not been signed in" in page.text
    assert not User.objects.filter(username="dana").exists()
    assert http.get(f"{chipmunk}/api/v1/me/", timeout=30).status_code == 401


def test_the_websocket_accepts_a_provider_session(chipmunk, oidc):
    import asyncio

    from channels.auth import AuthMiddlewareStack
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator

    from gallery.routing import websocket_urlpatterns

    http, landed = log_in(chipmunk, oidc, "dana")
    assert "Nothing here yet" in landed.text
    app = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))

    async def connect(cookie_header: str) -> bool:
        comm = WebsocketCommunicator(app, "/ws/events/", headers=[(b"cookie", cookie_header.encode())])
        connected, _ = await comm.connect(timeout=10)
        await comm.disconnect()
        return connected

    assert asyncio.run(connect(f"sessionid={cookie(http, 'sessionid')}")) is True
    assert asyncio.run(connect("sessionid=not-a-session")) is False


def test_the_whole_flow_in_chromium(oidc_provider, monkeypatch, request):
    """The same flow in a real browser: "Sign in with Test ID", the provider's form, the timeline."""
    from tests.conftest import oidc_provider_secret
    from tests.gallery.test_browser import CHROMIUM, CHROMIUM_ARGS, ensure_chromium

    ensure_chromium()
    for name, value in {"OIDC_ISSUER_URL": oidc_provider.issuer, "OIDC_CLIENT_ID": "chipmunk",
                        "OIDC_CLIENT_SECRET": oidc_provider_secret(), "OIDC_PROVIDER_NAME": "Test ID"}.items():
        monkeypatch.setenv(name, value)
    base = request.getfixturevalue("server")  # uvicorn, started with the variables above
    oidc_provider.allow(base)
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{base}/")
            page.click("text=Sign in with Test ID")
            page.fill("#id_username", "erin")
            page.fill("#id_password", "erin-password")
            page.click("#provider-login button[type=submit]")
            page.wait_for_selector("#timeline[aria-busy=false]", state="attached")
            assert page.get_by_text("Nothing here yet").first.is_visible()
            assert page.url == f"{base}/"
        finally:
            browser.close()
    erin = User.objects.get(username="erin")
    assert erin.plan == "pro" and Identity.objects.get(user=erin).issuer == oidc_provider.issuer
