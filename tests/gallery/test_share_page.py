"""The share page /s/<token>/: a grid and a lightbox for anyone with the link, a password form
first when the share has one, and one "not found" page for dead links."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from gallery.models import Album, Media, Share
from gallery.services.library import album_items_add
from gallery.services.sharing import share_create, share_revoke
from tests.conftest import api_client
from tests.gallery.test_browser import browser, server  # noqa: F401 (fixtures)


@pytest.fixture(autouse=True)
def _fresh_throttle():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def album(alice, upload, corpus) -> Album:
    album = Album.objects.create(owner=alice, title="Calanques")
    for name in ("Canon_40D.jpg", "Nikon_D70.jpg"):
        media = Media.objects.get(pk=upload(api_client(alice), corpus / "jpg" / name).json()["id"])
        album_items_add(album=album, media_ids=[media.pk])
    return album


@pytest.fixture
def outsider(alice, upload, corpus) -> Media:
    return Media.objects.get(pk=upload(api_client(alice), corpus / "jpg" / "gps" / "DSCN0010.jpg").json()["id"])


def image_urls(html: str) -> list[str]:
    return re.findall(r'src="([^"]+)"', html)


def test_the_page_shows_the_album_grid_with_share_urls_only(alice, album, outsider):
    share = share_create(owner=alice, album=album)
    response = Client().get(f"/s/{share.token}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Calanques" in html and "2 items" in html
    thumbs = [u for u in image_urls(html) if u.startswith("/s/")]
    assert len(thumbs) == 2 and all(u.startswith(f"/s/{share.token}/m/") for u in thumbs)
    for url in thumbs:  # they work without a login
        assert Client().get(url).status_code == 200
    assert outsider.token not in html and "alice" not in html and "/m/" not in html.replace(f"/s/{share.token}/m/", "")
    # The lightbox: a module script file (no inline code), data for each tile.
    assert 'type="module" src="/static/gallery/share.js"' in html
    assert html.count('data-large="/s/') == 2 and 'data-download=""' in html
    assert "<script>" not in html and "onclick" not in html


def test_download_links_appear_only_with_allow_download(alice, album):
    share = share_create(owner=alice, album=album, allow_download=True)
    html = Client().get(f"/s/{share.token}/").content.decode()
    downloads = re.findall(r'data-download="([^"]+)"', html)
    assert len(downloads) == 2 and all(d.endswith("/0/?download=1") for d in downloads)
    assert Client().get(downloads[0].replace("&amp;", "&")).status_code == 200


@pytest.mark.parametrize("how", ["revoked", "expired", "unknown"])
def test_dead_links_get_the_not_found_page(alice, album, how):
    share = share_create(owner=alice, album=album)
    token = share.token
    if how == "revoked":
        share_revoke(share=share)
    elif how == "expired":
        Share.objects.filter(pk=share.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    else:
        token = "x" * 32
    response = Client().get(f"/s/{token}/")
    assert response.status_code == 404
    assert "Share not found" in response.content.decode() and "This link does not work" in response.content.decode()
    assert "Calanques" not in response.content.decode()


def test_password_form_then_the_grid(alice, album):
    share = share_create(owner=alice, album=album, password="s3cret")
    visitor = Client(enforce_csrf_checks=True)
    form = visitor.get(f"/s/{share.token}/")
    assert form.status_code == 200
    html = form.content.decode()
    assert 'type="password"' in html and "Calanques" not in html and f"/s/{share.token}/m/" not in html
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    wrong = visitor.post(f"/s/{share.token}/", {"password": "nope", "csrfmiddlewaretoken": csrf})
    assert wrong.status_code == 403 and "Wrong password" in wrong.content.decode()
    right = visitor.post(f"/s/{share.token}/", {"password": "s3cret", "csrfmiddlewaretoken": csrf})
    assert right.status_code == 302 and right["Location"] == f"/s/{share.token}/"
    cookie = right.cookies[f"chipmunk_share_{share.pk}"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    page = visitor.get(f"/s/{share.token}/")
    assert page.status_code == 200 and "Calanques" in page.content.decode()
    # Without the form's CSRF token the POST is refused.
    assert Client(enforce_csrf_checks=True).post(f"/s/{share.token}/", {"password": "s3cret"}).status_code == 403


def test_password_guesses_are_throttled_on_the_page_too(settings, alice, album):
    settings.THROTTLE_RULES = {**settings.THROTTLE_RULES, "share-password": (2, 60)}
    share = share_create(owner=alice, album=album, password="s3cret")
    visitor = Client()
    for _ in range(2):
        assert visitor.post(f"/s/{share.token}/", {"password": "nope"}).status_code == 403
    response = visitor.post(f"/s/{share.token}/", {"password": "s3cret"})
    assert response.status_code == 429 and int(response["Retry-After"]) >= 1
    assert f"chipmunk_share_{share.pk}" not in response.cookies


def test_pages_carry_the_content_security_policy(alice, album):
    share = share_create(owner=alice, album=album)
    assert "script-src 'self'" in Client().get(f"/s/{share.token}/")["Content-Security-Policy"]


# --- In a real browser: the lightbox under the page's CSP ---------------------------------------
def test_the_lightbox_in_chromium(server, browser, alice, corpus):  # noqa: F811 (fixtures)
    from gallery.services.media import media_ingest

    album = Album.objects.create(owner=alice, title="Lightbox")
    for name in ("Canon_40D.jpg", "Nikon_D70.jpg"):
        path = corpus / "jpg" / name
        with open(path, "rb") as fh:
            made = media_ingest(owner=alice, stream=fh, size=path.stat().st_size, filename=name).media
        album_items_add(album=album, media_ids=[made.pk])
    share = share_create(owner=alice, album=album, allow_download=True)
    page = browser.new_page()  # no login
    problems = []
    # Console errors (a CSP violation among them) count; a failed load counts through its
    # response below (the browser's own /favicon.ico fetch has none and is not ours).
    page.on("console", lambda message: problems.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(f"{server}/s/{share.token}/")
    assert page.locator("#share-grid li.tile").count() == 2
    assert page.is_hidden("#lightbox")
    page.click("#share-grid li.tile >> nth=0")
    image = page.wait_for_selector("#lightbox-stage img")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image, timeout=10_000)
    first = page.inner_text("#lightbox-name")
    assert first in ("Canon_40D.jpg", "Nikon_D70.jpg") and page.is_visible("#lightbox-download")
    page.keyboard.press("ArrowRight")
    assert page.inner_text("#lightbox-name") not in ("", first)
    page.keyboard.press("Escape")
    assert page.is_hidden("#lightbox")
    assert problems == []

