"""The website's pages in a real browser (Debian's Chromium through Playwright, against uvicorn):
the navigation, accessibility (axe-core, vendored for the tests), the Content-Security-Policy,
screenshots at phone and desktop widths (tests/artifacts/, git-ignored), and each page's job.

Pages whose API another part of the project provides (albums, shares, the vault, search) get
their tests beside that API; here they are only checked to render, with a clear message
when their API answers an error.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.gallery import test_browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
AXE = (ROOT / "tests" / "vendor" / "axe-core-4.11.0" / "axe.min.js").read_text()
# The fixtures of the browser tests: uvicorn on the test database, and Chromium.
server = test_browser.server
browser = test_browser.browser
NAV = ["Photos", "Albums", "Search", "Map", "Shares", "Trash", "Vault", "Settings"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}


def ingest(owner, path: Path, name: str | None = None):
    """A media processed in this process (inline jobs), on the storage the server reads."""
    from gallery.services.media import media_ingest

    with open(path, "rb") as fh:
        return media_ingest(owner=owner, stream=fh, size=path.stat().st_size, filename=name or path.name).media


def set_taken(media, when: datetime, offset_hours: int) -> None:
    """A capture time as its owner would set it (PATCH taken_at): the timeline's counters follow."""
    from datetime import timedelta, timezone

    from gallery.services.edits import media_edit

    media.refresh_from_db()
    media_edit(media=media, taken_at=when.astimezone(timezone(timedelta(hours=offset_hours))))


class Browsing:
    """A logged-in page that records console errors and CSP violations."""

    def __init__(self, browser, server: str, username: str, *, viewport=DESKTOP, **context):
        self.server = server
        self.context = browser.new_context(viewport=viewport, **context)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.goto(f"{server}/login/")
        self.page.fill("input[name=username]", username)
        self.page.fill("input[name=password]", f"{username}-password")
        self.page.click("button[type=submit]")
        self.page.wait_for_url(f"{server}/")

    def _console(self, message) -> None:
        # Resources that fail to load (the map's outside tiles, offline here) are not the page's errors.
        if "Content Security Policy" in message.text or (
                message.type == "error" and not message.text.startswith("Failed to load resource")):
            self.problems.append(f"console {message.type}: {message.text}")

    def open(self, path: str):
        response = self.page.goto(f"{self.server}{path}")
        assert response.status == 200, (path, response.status)
        return response

    def csp_violations(self) -> list[str]:
        return [p for p in self.problems if "Content Security Policy" in p]

    def close(self) -> None:
        self.context.close()


def axe_violations(page, *, impacts=("serious", "critical")) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now."""
    # Evaluated through the DevTools protocol, which the page's CSP does not govern.
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE)
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {v['help']} -> {[n['target'] for n in v['nodes']][:5]}"
            for v in result["violations"] if v["impact"] in impacts]


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def nav_names(page) -> list[str]:
    nav = page.get_by_role("navigation", name="Main")
    return [nav.get_by_role("link").nth(i).inner_text().strip() for i in range(nav.get_by_role("link").count())]


def favourites_id(user) -> int:
    from gallery.services.library import favourites_for

    return favourites_for(user=user).pk


@pytest.fixture
def library(alice, corpus):
    """Alice's library: three photos (two with GPS), a text document."""
    photos = [ingest(alice, corpus / "jpg" / "gps" / "DSCN0010.jpg"), ingest(alice, corpus / "jpg" / "gps" / "DSCN0012.jpg"),
              ingest(alice, corpus / "jpg" / "orientation" / "portrait_1.jpg")]
    return photos


PAGES = ["/", "/albums/", "/search/", "/search/?q=paris", "/map/", "/shares/", "/trash/", "/vault/", "/settings/"]


@pytest.mark.parametrize("scheme,viewport,label", [("light", DESKTOP, "desktop"), ("dark", PHONE, "phone")])
def test_every_page_navigation_accessibility_csp_and_screenshots(server, alice, library, browser, scheme, viewport,
                                                                 label):
    tab = Browsing(browser, server, "alice", viewport=viewport, color_scheme=scheme)
    page = tab.page
    pages = [*PAGES, f"/albums/{favourites_id(alice)}/"]
    try:
        for path in pages:
            response = tab.open(path)
            csp = response.headers["content-security-policy"]
            assert "script-src 'self';" in csp and "unsafe-inline" not in csp
            # No outside origin but the map's tiles.
            assert set(re.findall(r"https?://[^\s;]+", csp)) <= {"https://tile.openstreetmap.org"}
            page.wait_for_load_state("networkidle")
            assert nav_names(page) == NAV, path
            assert page.get_by_role("search").count() >= 1
            assert page.locator("main").inner_text().strip(), f"{path} is blank"
            findings = axe_violations(page)
            assert not findings, (path, label, findings)
            name = path.strip("/").replace("/", "-").replace("?", "-").replace("=", "-") or "photos"
            name = "album-favourites" if re.fullmatch(r"albums-\d+", name) else name
            screenshot(page, f"{name}-{label}")
        assert not tab.csp_violations(), tab.csp_violations()
    finally:
        tab.close()


def test_an_api_error_is_a_clear_message_never_a_blank_page(server, alice, library, browser):
    tab = Browsing(browser, server, "alice")
    page = tab.page
    page.route("**/api/v1/media/**", lambda route: route.fulfill(
        status=503, content_type="application/json", body='{"error": "unavailable", "detail": "the database is down"}'))
    page.route("**/api/v1/timeline/**", lambda route: route.fulfill(
        status=503, content_type="application/json", body='{"error": "unavailable", "detail": "the database is down"}'))
    tab.open("/")
    alert = page.get_by_role("alert")
    alert.get_by_text("the database is down").wait_for(timeout=10_000)
    assert "Could not load the timeline" in alert.inner_text()
    assert nav_names(page) == NAV
    page.unroute("**/api/v1/media/**")
    page.route("**/api/v1/usage/", lambda route: route.abort("connectionrefused"))
    tab.open("/settings/")
    page.get_by_role("alert").get_by_text("could not be reached").wait_for(timeout=10_000)
    tab.close()


def test_photos_timeline_days_in_local_capture_time_justified_levels_and_lightbox(server, alice, library, browser):
    from gallery.models import Media

    # 22:30 UTC on 11 May is 00:30 on the 12th where it was taken (+02:00): the 12th, in every browser zone.
    late, portrait, third = library
    set_taken(late, datetime(2024, 5, 11, 22, 30, tzinfo=UTC), 2)
    set_taken(portrait, datetime(2024, 5, 11, 9, 0, tzinfo=UTC), 2)
    set_taken(third, datetime(2023, 12, 31, 12, 0, tzinfo=UTC), 0)
    tab = Browsing(browser, server, "alice", timezone_id="America/Los_Angeles", device_scale_factor=2)
    page = tab.page
    tab.open("/")
    page.wait_for_selector("#timeline .tile.loaded")
    headings = page.evaluate("""() => [...document.querySelectorAll('#timeline h2, #timeline h3')]
        .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top).map(h => h.textContent.trim())""")
    assert headings == ["May 2024", "Sunday 12 May 2024", "Saturday 11 May 2024", "December 2023",
                        "Sunday 31 December 2023"], headings
    # Justified: every tile keeps its picture's aspect ratio; the level fits the tile at DPR 2.
    tiles = page.evaluate("""() => [...document.querySelectorAll('#timeline .tile')].map(t => {
        const r = t.getBoundingClientRect(); const ph = t.querySelector('img.ph'); const full = t.querySelector('img.full');
        return {id: t.dataset.id, w: r.width, h: r.height, ph: ph && ph.getAttribute('src'), full: full && full.getAttribute('src'),
                nw: full && full.naturalWidth, nh: full && full.naturalHeight}; })""")
    assert len(tiles) == 3
    for tile in tiles:
        media = Media.objects.get(pk=tile["id"])
        assert abs(tile["w"] / tile["h"] - media.width / media.height) < 0.02, tile
        assert tile["ph"].endswith("/1/")  # the 10 px placeholder
        assert tile["nw"] >= min(tile["w"] * 2 - 1, 1080) or tile["full"].endswith("/6/"), tile
        assert not tile["full"].endswith("/1/")
    # Keyboard: a tile opens the lightbox, arrows step, Esc closes and focus returns.
    page.locator(f'#timeline .tile[data-id="{late.pk}"]').focus()  # the newest: the first of the timeline
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    first_title = dialog.locator("h2").inner_text()
    page.keyboard.press("ArrowRight")
    assert dialog.locator("h2").inner_text() != first_title
    page.keyboard.press("ArrowLeft")
    assert dialog.locator("h2").inner_text() == first_title
    page.get_by_role("button", name="Info").click()
    dialog.get_by_text("Dimensions").wait_for()
    assert "DSCN0010.jpg" in dialog.inner_text() or "DSCN0012.jpg" in dialog.inner_text()
    dialog.locator(".mini-map .leaflet-marker-pane > *, .mini-map path").first.wait_for(timeout=10_000)
    page.get_by_role("button", name="Zoom in").click()
    assert dialog.locator("img.lb-image").get_attribute("src").endswith("/6/")
    page.get_by_role("button", name="Zoom to original").click()
    assert dialog.locator("img.lb-image").get_attribute("src").endswith("/0/")
    assert not axe_violations(page)
    screenshot(page, "lightbox-desktop")
    page.keyboard.press("Escape")
    assert dialog.is_hidden()
    assert page.evaluate("document.activeElement.classList.contains('tile')")
    assert not tab.problems, tab.problems
    tab.close()


def test_selection_ranges_select_a_day_and_trash(server, alice, library, browser):
    from gallery.models import Media

    for i, media in enumerate(library):
        set_taken(media, datetime(2024, 5, 12, 10 + i, tzinfo=UTC), 0)
    tab = Browsing(browser, server, "alice")
    page = tab.page
    tab.open("/")
    page.wait_for_selector("#timeline .tile.loaded")
    tiles = page.locator("#timeline .tile")
    tiles.nth(0).click(modifiers=["Control"])
    bar = page.get_by_role("toolbar", name="Selection")
    bar.wait_for()
    assert bar.get_by_text("1 selected").is_visible()
    for name in ["Add to album", "Tag", "Favourite", "Move to vault", "Move to trash", "Clear selection"]:
        assert bar.get_by_role("button", name=name).is_visible()
    tiles.nth(2).click(modifiers=["Shift"])
    assert bar.get_by_text("3 selected").is_visible()
    page.get_by_role("button", name="Clear selection").click()
    assert bar.is_hidden()
    page.get_by_role("button", name="Select all of Sunday 12 May 2024").click()
    assert bar.get_by_text("3 selected").is_visible()
    tiles.nth(1).focus()
    page.keyboard.press("x")  # the keyboard's toggle
    assert bar.get_by_text("2 selected").is_visible()
    bar.get_by_role("button", name="Move to trash").click()
    page.wait_for_function("() => document.querySelectorAll('#timeline .tile').length === 1")
    assert page.inner_text("#count") == "1 item"
    assert Media.objects.visible_to(alice).count() == 1
    assert not tab.problems, tab.problems
    tab.close()


def test_a_hundred_thousand_items_need_no_more_than_a_few_thousand_nodes(server, alice, library, browser):
    """Windowing: 3,000 items scrolled through from top to bottom never have more than 3,000
    elements in the document (the grid keeps the rows near the viewport only)."""
    from collections import Counter

    from django.db import transaction

    from gallery.models import KindUsage, Media, Variant
    from gallery.services.timeline import timeline_add

    model = Media.objects.prefetch_related("variants").get(pk=library[0].pk)
    rows = [Media(owner=alice, kind="image", original_filename=f"IMG_{i:05d}.jpg", content_type="image/jpeg", size=1000,
                  sha256=f"{i:064x}", status="ready", taken_at_offset_minutes=0, width=model.width, height=model.height,
                  original_key=model.original_key,
                  taken_at=datetime(2010 + i // 336, 1 + i // 28 % 12, 1 + i % 28, 12, tzinfo=UTC))
            for i in range(3000)]
    for row in rows:
        row.set_capture_day(alice.time_zone)
    with transaction.atomic():
        Media.objects.bulk_create(rows)
        Variant.objects.bulk_create([Variant(media=m, level=v.level, width=v.width, height=v.height, size=v.size,
                                             content_type=v.content_type, storage_key=v.storage_key)
                                     for m in rows for v in model.variants.all()])
        # The counters the services keep for every row (usage by kind, the timeline's days).
        for day, count in Counter(row.taken_day for row in rows).items():
            timeline_add(owner_id=alice.pk, day=day, count=count)
        KindUsage.objects.filter(owner=alice, kind="image", place="library").update(count=3003)
    tab = Browsing(browser, server, "alice", viewport={"width": 1280, "height": 800})
    page = tab.page
    tab.open("/")
    page.wait_for_selector("#timeline .tile.loaded")
    most, y, months = 0, 0, set()
    while y < page.evaluate("document.documentElement.scrollHeight"):
        page.evaluate(f"window.scrollTo(0, {y})")
        page.wait_for_function("() => [...document.querySelectorAll('.vg-pending')].every(n => n.getBoundingClientRect().top > innerHeight"
                               " || n.getBoundingClientRect().bottom < 0)", timeout=20_000)
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")  # rendered
        most = max(most, page.evaluate("document.getElementsByTagName('*').length"))
        months.update(page.locator("#timeline h2").all_inner_texts())
        y += 1200
    expected = {m.taken_at_local().strftime("%B %Y") for m in Media.objects.filter(owner=alice).select_related("owner")}
    assert months == expected  # every month was shown on the way down, in order of capture
    assert most < 3000, most
    tab.close()


def test_settings_time_zone_usage_and_api_keys(server, alice, library, browser):
    import urllib.error
    import urllib.request

    tab = Browsing(browser, server, "alice")
    page = tab.page
    tab.open("/settings/")
    page.get_by_role("combobox", name="Time zone").select_option("Asia/Tokyo")
    page.get_by_role("button", name="Save time zone").click()
    page.get_by_text("Time zone saved.").wait_for()
    alice.refresh_from_db()
    assert alice.time_zone == "Asia/Tokyo"
    usage = page.locator("#usage")
    usage.get_by_text("Photos: 3").wait_for()
    assert "Plan:" in usage.inner_text()
    assert page.locator(".usage-bar .seg.image").count() == 1
    page.get_by_label("Name").fill("backup script")
    page.get_by_label("Access").select_option("media.read")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#key-secret-value")
    secret.wait_for()
    raw = secret.inner_text()
    assert raw.startswith("chip_")
    page.get_by_role("cell", name="backup script").wait_for()

    def me(key: str) -> int:
        request = urllib.request.Request(f"{server}/api/v1/me/", headers={"Authorization": f"Bearer {key}"})
        try:
            return urllib.request.urlopen(request, timeout=10).status
        except urllib.error.HTTPError as error:
            return error.code

    assert me(raw) == 200
    page.reload()
    assert raw not in page.content()  # shown once
    page.get_by_role("button", name="Revoke").click()
    page.get_by_role("cell", name="Revoked").wait_for()
    assert me(raw) == 401
    assert "No login provider is linked" in page.inner_text("main")
    assert not tab.problems, tab.problems
    tab.close()


@pytest.fixture
def unreachable_tiles(monkeypatch):
    from tests.conftest import free_port

    monkeypatch.setenv("MAP_TILE_URL", f"http://127.0.0.1:{free_port()}/{{z}}/{{x}}/{{y}}.png")


def test_map_markers_work_without_tiles_and_a_cluster_opens_its_media(unreachable_tiles, server, alice, library, browser):
    tab = Browsing(browser, server, "alice")
    page = tab.page
    response = tab.open("/map/")
    assert "http://127.0.0.1:" in response.headers["content-security-policy"]
    page.get_by_text("2 geotagged items").wait_for(timeout=15_000)
    # DSCN0010 and DSCN0012 were taken a few metres apart: one cluster at the world view.
    cluster = page.locator(".marker-cluster")
    cluster.first.wait_for()
    assert cluster.first.inner_text().strip() == "2"
    cluster.first.click()
    panel = page.get_by_role("region", name="Media at this place")
    panel.wait_for()
    assert panel.locator(".tile").count() == 2
    panel.locator(".tile").first.click()
    page.get_by_role("dialog").wait_for()
    page.keyboard.press("Escape")
    screenshot(page, "map-no-tiles-desktop")
    assert not tab.csp_violations()
    tab.close()


def test_map_tiles_from_a_local_url(server_with_local_tiles, alice, library, browser):
    tab = Browsing(browser, server_with_local_tiles, "alice")
    page = tab.page
    tab.open("/map/")
    page.locator(".leaflet-tile-loaded").first.wait_for(timeout=15_000)
    assert not tab.csp_violations()
    tab.close()


@pytest.fixture
def server_with_local_tiles(transactional_db, monkeypatch, request):
    # A path on this site: the tile is one of Leaflet's own images (a PNG), whatever z/x/y.
    monkeypatch.setenv("MAP_TILE_URL", "/static/vendor/leaflet-1.9.4/images/layers.png?z={z}&x={x}&y={y}")
    return request.getfixturevalue("server")


@pytest.fixture
def clip_and_document(server, alice, tmp_path):
    from tests.gallery.test_video import make_clip

    video = ingest(alice, make_clip(tmp_path / "clip.mp4", seconds=4.0))
    notes = tmp_path / "notes.pdf"
    notes.write_bytes(b"%PDF-1.4\n%\xe2\xe3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    return video, ingest(alice, notes)


def test_lightbox_plays_a_video_and_seeks_through_range(server, alice, clip_and_document, browser):
    video, _ = clip_and_document
    tab = Browsing(browser, server, "alice")
    page = tab.page
    tab.open("/")
    page.locator(f'#timeline .tile[data-id="{video.pk}"]').click()
    player = page.locator(".lightbox video")
    player.wait_for()
    assert player.get_attribute("poster")
    page.evaluate("() => { const v = document.querySelector('.lightbox video'); v.muted = true; return v.play(); }")
    page.wait_for_function("() => document.querySelector('.lightbox video').currentTime > 0.5", timeout=15_000)
    page.evaluate("document.querySelector('.lightbox video').pause(); document.querySelector('.lightbox video').currentTime = 3.0")
    page.wait_for_function("() => { const v = document.querySelector('.lightbox video'); return !v.seeking && Math.abs(v.currentTime - 3.0) < 0.1; }",
                           timeout=15_000)
    # The other item of the library, a document: an icon and a download link.
    page.keyboard.press("ArrowRight") if page.get_by_role("button", name="Next").is_enabled() else page.keyboard.press("ArrowLeft")
    page.get_by_role("link", name="Download notes.pdf").wait_for()
    assert not tab.problems, tab.problems
    tab.close()


def test_share_from_the_lightbox_open_signed_out_then_revoke_on_the_shares_page(server, alice, library, browser):
    tab = Browsing(browser, server, "alice")
    page = tab.page
    tab.open("/")
    page.locator("#timeline .tile").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Share").click()
    link = dialog.get_by_role("textbox", name="Share link")
    link.wait_for()
    url = link.input_value()
    assert "/s/" in url
    # A fresh browser, signed out: the page, its picture and its lightbox.
    for viewport, label in ((DESKTOP, "desktop"), (PHONE, "phone")):
        stranger = browser.new_context(viewport=viewport)
        public = stranger.new_page()
        problems = []
        public.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
        assert public.goto(url).status == 200
        public.wait_for_function("() => [...document.images].some(i => i.complete && i.naturalWidth > 0)")
        assert not axe_violations(public), label
        screenshot(public, f"share-public-{label}")
        public.locator("#share-grid a").first.click()
        public.get_by_role("dialog").wait_for()
        assert not axe_violations(public), label
        public.keyboard.press("Escape")
        assert not problems, problems
        stranger.close()
    tab.open("/shares/")
    row = page.locator("#shares tr")
    row.first.wait_for()
    assert row.count() == 1 and url in row.first.inner_text()
    row.first.get_by_role("button", name="Revoke").click()
    page.get_by_text("Link revoked").wait_for()
    page.get_by_text("You have not shared anything").wait_for()
    stranger = browser.new_context()
    public = stranger.new_page()
    gone = public.goto(url)
    assert gone.status == 404 and "not found" in public.inner_text("main").lower()
    stranger.close()
    assert not tab.problems, tab.problems
    tab.close()


def test_search_page_chips_narrow_and_results_open_in_the_lightbox(server, alice, library, browser):
    tab = Browsing(browser, server, "alice")
    page = tab.page
    page.get_by_role("search").get_by_role("searchbox").fill("DSCN")
    page.keyboard.press("Enter")
    page.wait_for_url("**/search/?q=DSCN")
    page.locator("#results .tile").nth(1).wait_for()
    assert page.locator("#grid").is_hidden()  # the server's grid gave way to the windowed one
    assert page.inner_text("#count").startswith("2 results")
    assert page.get_by_role("navigation", name="Main").get_by_role("link", name="Search").get_attribute(
        "aria-current") == "page"
    page.locator(".facet", has_text="Year").get_by_role("link").first.click()
    page.wait_for_url("**year=*")
    page.locator("#results .tile").first.wait_for()
    assert page.locator(".chips.active .chip").count() == 1
    page.locator("#results .tile").first.click()
    page.get_by_role("dialog").wait_for()
    assert not axe_violations(page)
    page.keyboard.press("Escape")
    assert not tab.problems, tab.problems
    tab.close()
