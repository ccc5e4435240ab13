"""The gallery in a real browser: Debian's Chromium driven by Playwright, against uvicorn.

The server is a uvicorn process on a loopback port, on the test database, with jobs run
inline so that processing and its websocket events happen in that process (in-memory
channel layer). Chromium is Debian's (/usr/bin/chromium); the test set-up installs it when
missing and fails under CI when it cannot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from config.settings import local_storage_config
from tests.conftest import free_port, use_storage
from tests.gallery.test_worker import database_url

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def ensure_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
    done = subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True)
    if done.returncode != 0 or not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"could not install chromium: {done.stderr.decode()[-2000:]}")
        pytest.skip("chromium is not installed and could not be installed here")


@pytest.fixture
def server(transactional_db, settings):
    """uvicorn serving config.asgi on the test database; yields its base URL."""
    use_storage(settings, local_storage_config(django_settings.MEDIA_ROOT))
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url(), "JOBS_MODE": "inline", "PORT": str(port),
           "CHIPMUNK_DATA_DIR": str(django_settings.DATA_DIR), "LOG_LEVEL": "warning"}
    env.pop("REDIS_URL", None)  # one process: the in-memory layer carries the events
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
                                "--port", str(port), "--lifespan", "off", "--log-level", "warning"],
                               cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{base}/health/", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise AssertionError("uvicorn did not start")
            time.sleep(0.2)
    yield base
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture
def browser(monkeypatch):
    ensure_chromium()
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls of the test
    # are still plain synchronous calls (Django's documented case for this variable).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def log_in(browser, server: str, username: str):
    """A new page, logged in through the login form; it lands on the timeline."""
    page = browser.new_page()
    page.goto(f"{server}/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"{username}-password")
    page.click("button[type=submit]")
    page.wait_for_selector("#timeline[aria-busy=false]", state="attached")
    return page


def test_login_upload_with_tus_and_see_the_photo_appear_live(server, browser, alice, corpus, tmp_path):
    photo = tmp_path / "DSCN0010.jpg"
    shutil.copy(corpus / "jpg" / "gps" / "DSCN0010.jpg", photo)
    page = log_in(browser, server, "alice")
    assert page.get_by_text("Nothing here yet").is_visible()

    # No reload from here on: the tile must arrive over the websocket, and turn from
    # processing to ready with its thumbnail.
    page.set_input_files("#upload-form input[type=file]", str(photo))
    tile_img = page.wait_for_selector("#timeline .tile.ready img.full", timeout=30_000)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=tile_img, timeout=10_000)
    natural = page.evaluate("img => [img.naturalWidth, img.naturalHeight]", tile_img)
    box = page.evaluate("img => [img.clientWidth, img.clientHeight]", tile_img)
    assert natural[0] >= box[0] and natural[1] >= box[1]  # a level that covers the tile, served to the session
    assert page.locator("#upload-list li").count() == 1
    assert page.locator("#upload-overall").is_visible()
    page.wait_for_timeout(1500)  # late events must not add a second tile, nor anything reload the page
    assert page.locator("#timeline .tile").count() == 1
    assert page.get_by_text("Nothing here yet").is_hidden()
    assert page.inner_text("#count") == "1 item"
    page.screenshot(path=str(tmp_path / "timeline.png"))
    if os.environ.get("CHIPMUNK_SCREENSHOTS"):
        shutil.copy(tmp_path / "timeline.png", os.environ["CHIPMUNK_SCREENSHOTS"])

    from gallery.models import Media

    media = Media.objects.get(owner=alice)
    assert media.status == Media.Status.READY and media.original_filename == "DSCN0010.jpg"
    assert media.variants.count() == 10


def test_stranger_sees_an_empty_grid_and_404_for_alices_photo(server, browser, alice, charlie, corpus):
    from gallery.services.media import media_ingest

    path = corpus / "jpg" / "Canon_40D.jpg"
    with open(path, "rb") as fh:
        media = media_ingest(owner=alice, stream=fh, size=path.stat().st_size, filename=path.name).media
    page = log_in(browser, server, "charlie")
    assert page.get_by_text("Nothing here yet").is_visible()
    assert page.locator("#timeline .tile").count() == 0
    response = page.goto(f"{server}/m/{media.token}/0/")
    assert response.status == 404
