"""The library's pages in Chromium: albums, favourites, the trash and share links, and the
flow a new user takes from the first upload to a share link opened signed out."""

from __future__ import annotations

import shutil

import pytest

from tests.gallery import test_browser
from tests.gallery.test_website import Browsing, axe_violations, ingest, screenshot

server = test_browser.server
browser = test_browser.browser


@pytest.fixture
def photos(server, alice, corpus):
    return [ingest(alice, corpus / "jpg" / "gps" / name) for name in ("DSCN0010.jpg", "DSCN0012.jpg", "DSCN0021.jpg")]


def test_albums_favourites_first_create_rename_and_add_from_a_selection(server, alice, photos, browser):
    tab = Browsing(browser, server, "alice")
    page = tab.page
    tab.open("/albums/")
    cards = page.locator(".album-card")
    cards.first.wait_for()
    assert cards.first.locator(".album-title").inner_text() == "Favourites"
    page.get_by_label("New album").fill("Holidays")
    page.get_by_role("button", name="Create album").click()
    page.get_by_text("Holidays").wait_for()
    page.locator(".album-card", has_text="Holidays").get_by_role("button", name="Rename").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Title").fill("Summer 2008")
    dialog.get_by_role("button", name="Rename").click()
    page.get_by_text("Summer 2008").wait_for()
    # Add two photos from the timeline's selection.
    tab.open("/")
    tiles = page.locator("#timeline .tile")
    tiles.first.wait_for()
    tiles.nth(0).click(modifiers=["Control"])
    tiles.nth(1).click(modifiers=["Control"])
    page.get_by_role("toolbar", name="Selection").get_by_role("button", name="Add to album").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Album", exact=True).select_option(label="Summer 2008")
    dialog.get_by_role("button", name="Add").click()
    page.get_by_text("2 added to the album").wait_for()
    tab.open("/albums/")
    page.locator(".album-card", has_text="Summer 2008").get_by_text("2 items").wait_for()
    assert page.locator(".album-card", has_text="Summer 2008").locator("img").count() == 1  # its cover
    page.get_by_role("link", name="Summer 2008").click()
    page.locator("#album-grid .tile").nth(1).wait_for()
    assert page.locator("#album-grid .tile").count() == 2
    assert page.locator("h1").inner_text() == "Summer 2008"
    assert not axe_violations(page)
    screenshot(page, "album-page-desktop")
    assert not tab.problems, tab.problems
    tab.close()


def test_trash_restore_and_empty(server, alice, photos, browser):
    from gallery.models import Media

    tab = Browsing(browser, server, "alice")
    page = tab.page
    tab.open("/")
    tiles = page.locator("#timeline .tile")
    tiles.first.wait_for()
    page.get_by_role("button", name="Select all of").first.click()
    page.get_by_role("toolbar", name="Selection").get_by_role("button", name="Move to trash").click()
    page.get_by_text("3 moved to the trash").wait_for()
    assert Media.objects.visible_to(alice).count() == 0
    tab.open("/trash/")
    grid = page.locator("#trash-grid .tile")
    grid.nth(2).wait_for()
    assert page.inner_text("#count") == "3 items in the trash"
    grid.nth(0).click(modifiers=["Control"])
    page.get_by_role("toolbar", name="Selection").get_by_role("button", name="Restore").click()
    page.get_by_text("1 restored").wait_for()
    assert Media.objects.visible_to(alice).count() == 1
    page.get_by_role("button", name="Empty trash").click()
    page.get_by_role("dialog").get_by_role("button", name="Empty trash").click()
    page.get_by_text("The trash is empty", exact=True).wait_for()
    assert Media.objects.filter(owner=alice).count() == 1
    assert not tab.problems, tab.problems
    tab.close()


@pytest.fixture
def new_user_files(tmp_path, corpus):
    from tests.gallery.test_video import make_clip

    names = ["DSCN0010.jpg", "DSCN0012.jpg", "DSCN0021.jpg"]
    for name in names:
        shutil.copy(corpus / "jpg" / "gps" / name, tmp_path / name)
    make_clip(tmp_path / "clip.mp4", seconds=4.0)
    return [str(tmp_path / name) for name in [*names, "clip.mp4"]]


def test_the_new_user_flow(server, alice, new_user_files, browser):
    from gallery.models import Media

    # 1. log in
    tab = Browsing(browser, server, "alice", timezone_id="Asia/Tokyo")
    page = tab.page
    # 2. upload three photos and a video (tus, with the progress bars)
    page.set_input_files("#upload-form input[type=file]", new_user_files)
    page.wait_for_function("() => document.querySelectorAll('#timeline .tile.ready').length === 4", timeout=90_000)
    assert page.locator("#upload-list li progress").count() == 4
    assert "done" in page.inner_text("#upload-overall-text")
    # 3. under the right day: the photos' local dates of capture
    days = {m.taken_at_local().date() for m in Media.objects.filter(owner=alice, kind="image")}
    headings = page.locator("#timeline h3").all_inner_texts()
    for day in days:
        assert any(h.endswith(f"{day.day} {day.strftime('%B')} {day.year}") for h in headings), (day, headings)
    # 4. the lightbox steps through
    page.locator("#timeline .tile").first.click()
    dialog = page.get_by_role("dialog")
    seen = {dialog.locator("h2").inner_text()}
    for _ in range(3):
        page.keyboard.press("ArrowRight")
        seen.add(dialog.locator("h2").inner_text())
    assert len(seen) == 4
    page.keyboard.press("Escape")
    # 5. the video plays, and seeking lands
    video = Media.objects.get(owner=alice, kind="video")
    page.locator(f'#timeline .tile[data-id="{video.pk}"]').click()
    page.evaluate("() => { const v = document.querySelector('.lightbox video'); v.muted = true; return v.play(); }")
    page.wait_for_function("() => document.querySelector('.lightbox video').currentTime > 0.5", timeout=15_000)
    page.evaluate("() => { const v = document.querySelector('.lightbox video'); v.pause(); v.currentTime = 3.0; }")
    page.wait_for_function("() => { const v = document.querySelector('.lightbox video');"
                           " return !v.seeking && Math.abs(v.currentTime - 3.0) < 0.1; }", timeout=15_000)
    # 6. favourite one
    dialog.get_by_role("button", name="Favourite").click()
    page.wait_for_function("() => document.querySelector('.lightbox [aria-pressed=true]')")
    page.keyboard.press("Escape")
    assert Media.objects.get(pk=video.pk).albums.filter(is_favourites=True).exists()
    # 7. two into a new album
    tiles = page.locator("#timeline .tile.image")
    tiles.nth(0).click(modifiers=["Control"])
    tiles.nth(1).click(modifiers=["Control"])
    page.get_by_role("toolbar", name="Selection").get_by_role("button", name="Add to album").click()
    page.get_by_role("dialog").get_by_label("Title of a new album").fill("Walks")
    page.get_by_role("dialog").get_by_role("button", name="Add").click()
    page.get_by_text("2 added to the album").wait_for()
    # 8. share the album
    tab.open("/albums/")
    page.get_by_role("link", name="Walks").click()
    page.locator("#album-grid .tile").nth(1).wait_for()
    page.get_by_role("button", name="Share album").click()
    link = page.locator("#share-result a.share-url")
    link.wait_for()
    url = link.get_attribute("href")
    # 9. the link in a new, signed-out context
    stranger = browser.new_context()
    public = stranger.new_page()
    assert public.goto(url).status == 200
    public.locator("img").first.wait_for()
    assert public.locator("main img").count() >= 2
    # 10. revoke: the link then shows "not found"
    tab.open("/shares/")
    page.get_by_role("button", name="Revoke").first.click()
    page.get_by_text("Link revoked").wait_for()
    gone = public.goto(url)
    assert gone.status == 404 and "not found" in public.inner_text("body").lower()
    stranger.close()
    assert not tab.problems, tab.problems
    tab.close()
