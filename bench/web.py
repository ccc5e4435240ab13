"""The website's timeline in a real browser: Debian's Chromium driven by Playwright.

    .venv/bin/python bench/web.py [--items 10000] [--runs 3] [--serve]   (--serve: seed, start, print the URL, wait)

One embedded instance (SQLite, local disk) in bench/.work/web/ (git-ignored), served by
`manage.py run --no-worker` (what `make run` starts, minus the job worker, which would only
poll). A few real photos of the corpus go through `import_folder` so their variants are the
pipeline's own files; the other items are rows whose variants point at those files (their
sizes and aspect ratios are the real photos'), with capture dates spread over ten years.

Each run opens a fresh browser context at 1280x800, logs in, and measures:
- first screen: from navigation start until every thumbnail in the first viewport has its
  full image loaded (the blurred level 1 first, then the level for the tile at this DPR);
  goal < 1 s. Reference in the same run: the page without JavaScript (its <noscript> grid of
  the first 120 items, plain <img> tags), to the same point.
- DOM nodes: the most seen while scrolling from top to bottom (every month loaded on the
  way) and at the bottom; goal < 3,000. Reference: the DOM of the no-JS page for 120 items.
- frames dropped: the page is scrolled at 40,000 px/s for 3 s (a scrollBy every 16.7 ms) while
  requestAnimationFrame records frame intervals; a dropped frame is each 16.7 ms missing
  beyond the first. Reference: the same scroll over a blank page of the same height.
Figures are the median [range] of --runs runs. The machine is shared: treat wall times as loose.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work" / "web"
PYTHON = sys.executable
CORPUS = ROOT.parent / "shared" / "corpus" / "jpg"
PHOTOS = ["gps/DSCN0010.jpg", "gps/DSCN0025.jpg", "orientation/portrait_1.jpg", "Canon_40D.jpg", "Nikon_D70.jpg",
          "orientation/landscape_1.jpg"]
PASSWORD = "bench-web-password"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

SEED = """
import random
from datetime import UTC, datetime, timedelta
from django.db import transaction
from gallery.models import Media, User, Variant
user = User.objects.get(username="bench")
real = list(Media.objects.filter(owner=user).prefetch_related("variants"))
rng = random.Random(7)
start = datetime(2015, 1, 1, tzinfo=UTC)
with transaction.atomic():
    for first in range(0, %(n)d, 2000):
        batch = []
        for i in range(first, min(%(n)d, first + 2000)):
            model = real[i %% len(real)]
            batch.append(Media(owner=user, kind="image", original_filename=f"IMG_{i:07d}.jpg", content_type="image/jpeg",
                               size=model.size, sha256="%%064x" %% rng.getrandbits(256), status="ready",
                               taken_at=start + timedelta(seconds=rng.randrange(0, 10 * 365 * 86400)),
                               taken_at_offset_minutes=60, taken_at_estimated=False, width=model.width,
                               height=model.height, original_key=model.original_key))
        for m in batch:
            m.set_capture_day(user.time_zone)
        Media.objects.bulk_create(batch)
        Variant.objects.bulk_create([
            Variant(media=m, level=v.level, width=v.width, height=v.height, size=v.size, content_type=v.content_type,
                    storage_key=v.storage_key)
            for i, m in enumerate(batch) for v in real[(first + i) %% len(real)].variants.all()])
from django.db import connection
with transaction.atomic(), connection.cursor() as cursor:
    cursor.execute("DELETE FROM gallery_kindusage")
    cursor.execute(\"\"\"INSERT INTO gallery_kindusage (owner_id, kind, place, count, bytes)
        SELECT owner_id, kind, CASE WHEN in_vault THEN 'vault' WHEN trashed_at IS NOT NULL THEN 'trash'
        ELSE 'library' END AS place, COUNT(*), SUM(size) FROM gallery_media GROUP BY 1, 2, 3\"\"\")
    cursor.execute("UPDATE gallery_user SET used_bytes = COALESCE((SELECT SUM(size) FROM gallery_media "
                   "WHERE owner_id = gallery_user.id), 0)")
# The timeline's day counters, as the services keep them for every row.
from collections import Counter
from gallery.services.timeline import timeline_add
from gallery.models import TimelineDay
TimelineDay.objects.filter(owner=user).delete()
for day, count in Counter(Media.objects.filter(owner=user).values_list("taken_day", flat=True)).items():
    timeline_add(owner_id=user.pk, day=day, count=count)
print(Media.objects.filter(owner=user).count())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(env: dict, *args: str) -> str:
    result = subprocess.run([PYTHON, "manage.py", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def base_env(data_dir: Path) -> dict:
    dropped = ("DATABASE_", "REDIS_URL", "S3_", "BLOB_CACHE", "WEB_WORKERS", "STORAGE_BACKEND", "DELIVERY_MODE",
               "JOBS_MODE", "SEARCH_BACKEND", "OIDC_", "DEBUG")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(CHIPMUNK_DATA_DIR=str(data_dir), LOG_LEVEL="warning", JOBS_MODE="inline")
    return env


def seed(items: int) -> dict:
    """The instance's data dir, seeded once per item count (kept between runs of the bench)."""
    data_dir = WORK / f"data-{items}-v2"  # v2: with the timeline's day counters
    env = base_env(data_dir)
    if (data_dir / "seeded").exists():
        manage(env, "migrate", "--noinput")  # as `make run` does: the code may have moved on since the seeding
        return env
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    manage(env, "migrate", "--noinput")
    manage(env, "createuser", "bench", "--password", PASSWORD, "--quota", "100000TB", "--time-zone", "Europe/Paris")
    photos = data_dir / "photos"
    photos.mkdir()
    for name in PHOTOS:
        shutil.copy(CORPUS / name, photos / Path(name).name)
    manage(env, "import_folder", str(photos), "--user", "bench")
    count = manage(env, "shell", "-c", SEED % {"n": items - len(PHOTOS)}).strip().splitlines()[-1]
    print(f"seeded {count} items in {data_dir}", flush=True)
    (data_dir / "seeded").touch()
    return env


class Server:
    def __init__(self, env: dict):
        self.port = free_port()
        log = open(WORK / "server.log", "ab")
        self.proc = subprocess.Popen([PYTHON, "manage.py", "run", "--no-worker"], cwd=ROOT, stdout=log, stderr=log,
                                     env={**env, "PORT": str(self.port), "BIND_ADDRESS": "127.0.0.1"},
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit("the server did not start: see bench/.work/web/server.log")
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


FIRST_SCREEN_JS = """(sel) => {
  const tiles = [...document.querySelectorAll(sel)].filter((t) => {
    const r = t.getBoundingClientRect();
    return r.bottom > 0 && r.top < innerHeight && r.width > 0;
  });
  if (tiles.length < 4) return false;
  return tiles.every((t) => { const i = t.querySelector('img.full') || (t.tagName === 'IMG' ? t : t.querySelector('img'));
                              return i && i.complete && i.naturalWidth > 0; });
}"""

FRAMES_JS = """async (seconds) => {
  const intervals = [];
  let last = performance.now();
  let running = true;
  const tick = (now) => { intervals.push(now - last); last = now; if (running) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  const end = performance.now() + seconds * 1000;
  await new Promise((resolve) => {
    const step = () => {
      window.scrollBy(0, 40000 / 60);
      if (performance.now() < end) setTimeout(step, 1000 / 60); else resolve();
    };
    step();
  });
  running = false;
  const expected = intervals.reduce((a, b) => a + b, 0) / (1000 / 60);
  const dropped = intervals.reduce((n, d) => n + Math.max(0, Math.round(d / (1000 / 60)) - 1), 0);
  return {frames: intervals.length, dropped, expected: Math.round(expected)};
}"""


def login(context, url: str):
    page = context.new_page()
    page.goto(f"{url}/login/")
    page.fill("input[name=username]", "bench")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")
    return page


def one_run(browser, url: str) -> dict:
    out = {}
    # The page as it is: first screen, DOM while scrolling everything, frames.
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = login(context, url)
    page.goto("about:blank")
    page.goto(f"{url}/")
    page.wait_for_function(FIRST_SCREEN_JS, arg="#timeline .tile", timeout=30_000, polling=20)
    out["first_screen_ms"] = page.evaluate("performance.now()")
    most = 0
    y = 0
    while True:
        height = page.evaluate("document.documentElement.scrollHeight")
        if y >= height:
            break
        page.evaluate(f"window.scrollTo(0, {y})")
        page.wait_for_timeout(30)
        page.wait_for_function("() => [...document.querySelectorAll('.vg-pending')].every(n => {"
                               "const r = n.getBoundingClientRect(); return r.top > innerHeight || r.bottom < 0; })",
                               timeout=30_000)
        most = max(most, page.evaluate("document.getElementsByTagName('*').length"))
        y += 700
    out["dom_max"] = most
    out["dom_bottom"] = page.evaluate("document.getElementsByTagName('*').length")
    out["loaded_items"] = page.evaluate("document.querySelectorAll('#count')[0].dataset.count")
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(500)
    out["frames"] = page.evaluate(FRAMES_JS, 3)
    total_height = page.evaluate("document.documentElement.scrollHeight")
    context.close()
    # References: the no-JS page (its <noscript> grid served as the page itself), and the same
    # scroll over a blank page.
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = login(context, url)
    # The no-JS markup as a browser without JavaScript gets it, in a page that runs none of ours.
    html = page.evaluate("fetch('/').then(r => r.text())")
    nojs = html.split("<noscript>", 1)[1].split("</noscript>", 1)[0] if "<noscript>" in html else ""
    page.route(f"{url}/reference/", lambda route: route.fulfill(
        status=200, content_type="text/html",
        body=f"<!doctype html><link rel=stylesheet href='/static/gallery/gallery.css'><main>{nojs}</main>"))
    page.goto("about:blank")
    page.goto(f"{url}/reference/")
    page.wait_for_function(FIRST_SCREEN_JS, arg="#grid li.tile", timeout=30_000, polling=20)
    out["ref_first_screen_ms"] = page.evaluate("performance.now()")
    out["ref_dom"] = page.evaluate("document.getElementsByTagName('*').length")
    page.route(f"{url}/blank/", lambda route: route.fulfill(
        status=200, content_type="text/html",
        body=f"<!doctype html><body style='margin:0'><div style='height:{total_height}px'></div></body>"))
    page.goto(f"{url}/blank/")
    out["ref_frames"] = page.evaluate(FRAMES_JS, 3)
    context.close()
    return out


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} [{min(values):.0f}-{max(values):.0f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--serve", action="store_true", help="seed, serve and wait (for looking at it by hand)")
    parser.add_argument("--json", help="write the figures here")
    opts = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    # A stopped bench stops its server too (it runs in a session of its own).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    env = seed(opts.items)
    server = Server(env)
    try:
        if opts.serve:
            print(f"{server.url}/  user bench, password {PASSWORD}", flush=True)
            while True:
                time.sleep(3600)
        from playwright.sync_api import sync_playwright

        runs = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for i in range(opts.runs):
                figures = one_run(browser, server.url)
                print(f"run {i + 1}: {json.dumps(figures)}", flush=True)
                runs.append(figures)
            browser.close()
    finally:
        server.stop()
    first = [r["first_screen_ms"] for r in runs]
    ref_first = [r["ref_first_screen_ms"] for r in runs]
    print(f"\n{opts.items} items, 1280x800, {opts.runs} runs, median [range]")
    print(f"first screen of thumbnails loaded: {summary(first)} ms (goal < 1000); "
          f"reference, the no-JS page: {summary(ref_first)} ms; ratio {statistics.median(first) / statistics.median(ref_first):.2f}")
    print(f"DOM nodes, most while scrolling through all: {summary([r['dom_max'] for r in runs])} (goal < 3000); "
          f"at the bottom {summary([r['dom_bottom'] for r in runs])}; reference, the no-JS page of 120 items: "
          f"{summary([r['ref_dom'] for r in runs])}")
    print(f"frames dropped in 3 s of fast scrolling: {summary([r['frames']['dropped'] for r in runs])} of "
          f"{summary([r['frames']['expected'] for r in runs])}; reference, a blank page: "
          f"{summary([r['ref_frames']['dropped'] for r in runs])} of {summary([r['ref_frames']['expected'] for r in runs])}")
    if opts.json:
        Path(opts.json).write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
