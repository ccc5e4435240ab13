"""The vault page in Chromium: set up (the recovery key shown once, copied), lock, a wrong and
a right passphrase, the auto-lock time, an upload into the vault and moves both ways."""

from __future__ import annotations

import pytest

from tests.gallery import test_browser
from tests.gallery.test_website import Browsing, axe_violations, ingest, screenshot

server = test_browser.server
browser = test_browser.browser
PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def photo(server, alice, corpus):
    return ingest(alice, corpus / "jpg" / "Canon_40D.jpg")


def test_vault_set_up_lock_unlock_upload_and_move(server, alice, photo, browser, corpus):
    from gallery.models import Media

    tab = Browsing(browser, server, "alice")
    tab.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = tab.page
    tab.open("/vault/")
    page.get_by_role("heading", name="Set up your vault").wait_for()
    page.get_by_label("Passphrase (at least 10 characters)").fill(PASSPHRASE)
    page.get_by_label("Passphrase again").fill(PASSPHRASE)
    page.get_by_role("button", name="Create the vault").click()
    key = page.locator("#recovery-key")
    page.get_by_role("heading", name="Your recovery key").wait_for()
    recovery = key.inner_text().strip()
    assert len(recovery) >= 20
    page.get_by_role("button", name="Copy recovery key").click()
    page.get_by_text("Recovery key copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()").strip() == recovery
    page.get_by_role("button", name="I have saved it").click()
    assert recovery not in page.inner_text("body")  # shown once
    # Locked (or lock it), a wrong passphrase, then the right one.
    if page.get_by_role("button", name="Lock now").is_visible():
        page.get_by_role("button", name="Lock now").click()
    page.get_by_role("heading", name="Unlock", exact=True).wait_for()
    page.get_by_label("Passphrase", exact=True).fill("not the passphrase")
    page.get_by_role("button", name="Unlock").click()
    page.get_by_role("alert").get_by_text("Wrong passphrase").wait_for()
    page.get_by_label("Passphrase", exact=True).fill(PASSPHRASE)
    page.get_by_role("button", name="Unlock").click()
    page.get_by_text("Locks by itself at").wait_for()
    # Upload into the vault.
    page.set_input_files("#vault-files", str(corpus / "jpg" / "Nikon_D70.jpg"))
    page.get_by_role("button", name="Upload", exact=True).click()
    page.locator("#vault-grid .tile").first.wait_for(timeout=60_000)
    assert Media.objects.visible_to(alice).count() == 1  # the library did not get it
    assert not axe_violations(page)
    screenshot(page, "vault-unlocked-desktop")
    # Move the library's photo in from the timeline, then the uploaded one out.
    tab.open("/")
    page.locator("#timeline .tile").first.click(modifiers=["Control"])
    page.get_by_role("toolbar", name="Selection").get_by_role("button", name="Move to vault").click()
    page.get_by_text("1 moved to the vault").wait_for()
    assert Media.objects.visible_to(alice).count() == 0
    tab.open("/vault/")
    page.locator("#vault-grid .tile").nth(1).wait_for()
    page.locator("#vault-grid .tile").first.click(modifiers=["Control"])
    page.get_by_role("toolbar", name="Selection").get_by_role("button", name="Move to library").click()
    page.get_by_text("1 moved to the library").wait_for()
    assert Media.objects.visible_to(alice).count() == 1
    page.get_by_role("button", name="Lock now").click()
    page.get_by_role("heading", name="Unlock", exact=True).wait_for()
    assert page.locator("#vault-grid .tile").count() == 0 or page.locator("#vault-open").is_hidden()
    assert not tab.problems, tab.problems
    tab.close()
