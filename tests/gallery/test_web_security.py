"""gallery.web.security: proxy headers only from trusted proxies, Secure cookies and HSTS on
secure requests, the Content-Security-Policy on HTML pages."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from gallery.web.security import forwarded_client, parse_origin

pytestmark = pytest.mark.django_db
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https://tile.openstreetmap.org data: blob:; "
       "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'")
LOGIN = {"username": "alice", "password": "alice-password"}


def test_behind_a_trusted_https_proxy_cookies_are_secure_and_hsts_is_sent(client, alice, settings):
    settings.FORWARDED_ALLOW_IPS = "10.0.0.2"
    page = client.get("/login/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_PROTO="https")
    assert page.cookies["csrftoken"]["secure"] is True
    assert page["Strict-Transport-Security"] == "max-age=31536000"
    login = client.post("/login/", LOGIN, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_PROTO="https")
    assert login.status_code == 302
    assert login.cookies["sessionid"]["secure"] is True and login.cookies["sessionid"]["httponly"] is True
    assert login.cookies["csrftoken"]["secure"] is True  # rotated at login


@pytest.mark.parametrize("peer,proto", [("10.0.0.2", None), ("198.51.100.7", "https")])
def test_plain_http_or_an_untrusted_claim_is_not_secure(client, alice, settings, peer, proto):
    settings.FORWARDED_ALLOW_IPS = "10.0.0.2"
    extra = {"HTTP_X_FORWARDED_PROTO": proto} if proto else {}
    login = client.post("/login/", LOGIN, REMOTE_ADDR=peer, **extra)
    assert login.status_code == 302
    assert not login.cookies["sessionid"]["secure"]
    assert "Strict-Transport-Security" not in login


def test_html_pages_carry_the_content_security_policy(client, alice, admin_client):
    assert client.get("/login/")["Content-Security-Policy"] == CSP
    client.force_login(alice)
    assert client.get("/")["Content-Security-Policy"] == CSP
    assert admin_client.get("/admin/")["Content-Security-Policy"] == CSP
    health = client.get("/health/")
    assert health["Content-Type"] == "application/json" and "Content-Security-Policy" not in health


def test_templates_have_no_inline_script_or_style(settings):
    """The policy allows no inline code: everything a page runs or styles with is a static file."""
    import re

    for path in (settings.BASE_DIR / "templates").rglob("*.html"):
        text = re.sub(r"{#.*?#}", "", path.read_text())  # template comments may name what they avoid
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), path
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", text), path


def test_forwarded_for_counts_only_from_a_trusted_proxy(settings):
    settings.FORWARDED_ALLOW_IPS = "10.0.0.0/24"
    assert forwarded_client("198.51.100.7", "203.0.113.5") == "198.51.100.7"
    assert forwarded_client("10.0.0.2", "1.1.1.1, 203.0.113.5, 10.0.0.9") == "203.0.113.5"
    assert forwarded_client("10.0.0.2", "203.0.113.5:4711") == "203.0.113.5"
    assert forwarded_client("10.0.0.2", "not-an-address") == "10.0.0.2"
    # "*": the peer's word for one hop, the address it appended, not what the client wrote before it.
    settings.FORWARDED_ALLOW_IPS = "*"
    assert forwarded_client("172.18.0.5", "1.1.1.1, 203.0.113.5") == "203.0.113.5"


def test_a_client_cannot_dodge_the_address_throttle_with_forwarded_for(client, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.THROTTLE_RULES = {"login-account": (5, 60), "login-address": (3, 60)}
    cache.clear()
    try:
        # Direct, untrusted: a new X-Forwarded-For each time changes nothing.
        for number in range(3):
            client.post("/login/", {"username": f"u{number}", "password": "x"}, REMOTE_ADDR="198.51.100.7",
                        HTTP_X_FORWARDED_FOR=f"192.0.2.{number}")
        assert client.post("/login/", {"username": "v", "password": "x"}, REMOTE_ADDR="198.51.100.7",
                           HTTP_X_FORWARDED_FOR="192.0.2.99").status_code == 429
        # Behind nginx (appends the real address) trusted as "*": the spoofed first hop changes nothing.
        settings.FORWARDED_ALLOW_IPS = "*"
        for number in range(3):
            client.post("/login/", {"username": f"w{number}", "password": "x"}, REMOTE_ADDR="172.18.0.5",
                        HTTP_X_FORWARDED_FOR=f"192.0.2.{number}, 203.0.113.5")
        assert client.post("/login/", {"username": "z", "password": "x"}, REMOTE_ADDR="172.18.0.5",
                           HTTP_X_FORWARDED_FOR="192.0.2.99, 203.0.113.5").status_code == 429
        assert client.post("/login/", {"username": "z", "password": "x"}, REMOTE_ADDR="172.18.0.5",
                           HTTP_X_FORWARDED_FOR="203.0.113.6").status_code == 200
    finally:
        cache.clear()


@pytest.mark.parametrize("text,expected", [
    ("https://Photos.Example.org", ("https", "photos.example.org", 443)),
    ("http://127.0.0.1:8000", ("http", "127.0.0.1", 8000)),
    ("http://[::1]", ("http", "::1", 80)),
    ("null", None), ("ftp://example.org", None), ("http://example.org:99999", None), ("", None),
])
def test_parse_origin(text, expected):
    assert parse_origin(text) == expected


@pytest.mark.parametrize("url,origin", [
    ("https://tile.openstreetmap.org/{z}/{x}/{y}.png", "https://tile.openstreetmap.org"),
    ("https://{s}.tiles.example:8443/v1/{z}/{x}/{y}.png", "https://*.tiles.example:8443"),
    ("/static/tiles/{z}/{x}/{y}.png", ""),
])
def test_the_map_tile_origin_is_the_one_outside_origin_pages_may_load(url, origin):
    from config.settings import map_tile_origin

    assert map_tile_origin(url) == origin
