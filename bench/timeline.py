"""The library API at a million media on PostgreSQL: timeline buckets, a bucket's first page, an album page.

    .venv/bin/python bench/timeline.py [--million 1000000] [--variants 10] [--requests 200] [--reseed] [--json out.json]

Seeds --million media of one user (and --variants variants each) in the database of
--database-url (default postgresql://postgres@127.0.0.1:5432/bench_timeline) with
INSERT ... SELECT generate_series, inside PostgreSQL itself (no row crosses the network). The capture day columns, the timeline's day counters
(gallery_timelineday), the kind counters and used_bytes are computed from the rows the way
migration 0006 and 0004 do. An album of 10,000 media, 1,000 favourites and 50,000 tagged
media come with it. The seeded database is kept and reused while its fingerprint matches,
so runs after the first skip the seeding (--reseed forces it).

Requests go through Django's test client in this process (the whole middleware and DRF
stack, no HTTP server and no network), with an API key and DATABASE_POOL=true, as a
production web process runs. Each case is a function taking the seeded facts and returning
one request path; CASES lists them with their goals. A new case (a sync page of 500, say)
is one more function and one more line in CASES. The reference, measured in the same run,
is GET /api/v1/me/: the floor of any API request on this stack; each case is also printed
as a ratio to it. Beside each figure, this process's CPU per request (PostgreSQL's not
included): on a shared machine wall times move with the neighbours' load, CPU hardly does.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/bench_timeline"
PASSWORD = "bench-timeline-password"
LEVELS = ("3s", "4s", "2s", "1s", "1", "2", "3", "4", "5", "6")
ALBUM_SIZE, FAVOURITES, TAGGED, TAGS = 10_000, 1_000, 50_000, 20
TRASHED_EVERY = 200  # 0.5 % of the rows are in the trash: lists and counts must skip them
SEED_VERSION = 2  # 2: album rows carry their media's taken_at (gallery.models.AlbumItem); variants per media


# --- Seeding (PostgreSQL itself does the work) ---------------------------------------------
def manage(env: dict, *args: str) -> str:
    result = subprocess.run([PYTHON, "manage.py", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=900, check=False)
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def fingerprint(opts: argparse.Namespace) -> str:
    return json.dumps({"seed": SEED_VERSION, "media": opts.million, "variants": opts.variants}, sort_keys=True)


def seeded(dsn: str, mark: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            comment = conn.execute("SELECT obj_description('gallery_media'::regclass, 'pg_class')").fetchone()[0]
            return comment == mark
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable):
        return False


def recreate_database(dsn: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(dsn)
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        name = sql.Identifier(parts.path.lstrip("/"))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


# Ten years of captures spread by a multiplicative hash of the row number; every row at +01:00,
# so its local day is taken_at + 1 h (what capture_day computes for that offset).
INSERT_MEDIA = """
INSERT INTO gallery_media (id, owner_id, kind, original_filename, content_type, size, sha256, status, error,
    taken_at, taken_at_offset_minutes, taken_at_estimated, taken_at_manual, location_manual, taken_day, taken_month,
    description, width, height, duration, latitude, longitude, altitude, place_city, place_region, place_country,
    camera_make, camera_model, exif, details, trashed_at, in_vault, original_key, token, created_at, updated_at)
SELECT md5('m' || i)::uuid, %(owner)s, 'image', 'IMG_' || lpad(i::text, 7, '0') || '.jpg', 'image/jpeg',
    1500000 + (i::bigint * 7919) %% 4500000, md5('a' || i) || md5('b' || i), 'ready', '',
    t, 60, false, false, false, (t + interval '60 minutes')::date, date_trunc('month', t + interval '60 minutes')::date,
    '', 4000, 3000, NULL, 48.85, 2.35, 35.0, 'Paris', 'Île-de-France', 'France', 'Canon', 'Canon EOS 40D', '{}', '{}',
    CASE WHEN i %% %(trashed_every)s = 0 THEN now() END, false,
    %(owner_text)s || '/library/originals/bench/' || i || '.jpg', substr(md5('t' || i), 1, 22), now(), now()
FROM generate_series(1, %(n)s) AS i,
     LATERAL (SELECT (timestamptz '2015-01-01 00:00:00+00'
                      + make_interval(secs => (i::bigint * 2654435761 %% 315360000)::double precision)) AS t) AS x
"""
# A media's variants side by side, as processing writes them (one bulk_create per media): the
# levels come from a set-returning function evaluated per media row, so the media stay the
# outer loop. (Seed 1 joined the levels in a way PostgreSQL ran with the levels outside, which
# put each media's ten variants 25,000 pages apart: a page of a hundred media then read a
# thousand heap pages of gallery_variant, a layout no server has.)
INSERT_VARIANTS = """
INSERT INTO gallery_variant (media_id, level, width, height, size, content_type, storage_key, created_at)
SELECT l.id, l.level, 400, 400, 3700, 'image/webp',
       %(owner_text)s || '/library/variants/' || l.id || '/' || l.level || '-bench.webp', now()
FROM (SELECT m.id, unnest(%(levels)s::text[]) AS level FROM gallery_media m) AS l
"""


def seed(opts: argparse.Namespace, env: dict) -> None:
    import psycopg
    from psycopg import sql

    started = time.monotonic()
    recreate_database(opts.database_url)
    manage(env, "migrate", "--noinput")
    manage(env, "createuser", "bench", "--password", PASSWORD, "--quota", "100000TB")
    with psycopg.connect(opts.database_url) as conn:
        owner = conn.execute("SELECT id FROM gallery_user WHERE username = 'bench'").fetchone()[0]
        conn.execute("SET session_replication_role = replica")  # consistent by construction: no FK triggers
        conn.execute("SET maintenance_work_mem = '256MB'")
        # Plain indexes are built once at the end (a sort, not a million inserts each).
        plain = conn.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid "
            "WHERE i.indrelid IN ('gallery_media'::regclass, 'gallery_variant'::regclass) AND c.oid IS NULL").fetchall()
        for name, _ in plain:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        args = {"owner": owner, "owner_text": str(owner), "n": opts.million, "trashed_every": TRASHED_EVERY,
                "levels": list(LEVELS[: opts.variants])}
        conn.execute(INSERT_MEDIA, args)
        print(f"  {opts.million} media in {time.monotonic() - started:.0f} s", flush=True)
        conn.execute(INSERT_VARIANTS, args)
        print(f"  variants in {time.monotonic() - started:.0f} s", flush=True)
        for _, definition in plain:
            conn.execute(definition)
        print(f"  indexes in {time.monotonic() - started:.0f} s", flush=True)
        # The counters, from the rows (what the services keep exact one write at a time).
        conn.execute("DELETE FROM gallery_kindusage")
        conn.execute("""INSERT INTO gallery_kindusage (owner_id, kind, place, count, bytes)
            SELECT owner_id, kind, CASE WHEN in_vault THEN 'vault' WHEN trashed_at IS NOT NULL THEN 'trash'
            ELSE 'library' END, COUNT(*), SUM(size) FROM gallery_media GROUP BY 1, 2, 3""")
        conn.execute("UPDATE gallery_user SET used_bytes = (SELECT SUM(size) FROM gallery_media) WHERE id = %s",
                     (owner,))
        conn.execute("""INSERT INTO gallery_timelineday (owner_id, day, count)
            SELECT owner_id, taken_day, COUNT(*) FROM gallery_media WHERE trashed_at IS NULL AND NOT in_vault
            GROUP BY 1, 2""")
        # An album, the favourites and tags: ids are md5s, so "first by id" is a random sample.
        album = conn.execute("INSERT INTO gallery_album (owner_id, title, is_favourites, created_at) "
                             "VALUES (%s, 'Bench album', false, now()) RETURNING id", (owner,)).fetchone()[0]
        favourites = conn.execute("SELECT id FROM gallery_album WHERE owner_id = %s AND is_favourites",
                                  (owner,)).fetchone()[0]
        conn.execute("INSERT INTO gallery_album_media (album_id, media_id, taken_at) SELECT %s, id, taken_at "
                     "FROM gallery_media ORDER BY id LIMIT %s", (album, ALBUM_SIZE))
        conn.execute("INSERT INTO gallery_album_media (album_id, media_id, taken_at) SELECT %s, id, taken_at "
                     "FROM gallery_media ORDER BY id DESC LIMIT %s", (favourites, FAVOURITES))
        conn.execute("INSERT INTO gallery_tag (owner_id, name, key) SELECT %s, 'tag ' || i, 'tag ' || i "
                     "FROM generate_series(0, %s) AS i", (owner, TAGS - 1))
        conn.execute("""INSERT INTO gallery_media_tags (media_id, tag_id)
            SELECT m.id, t.id FROM (SELECT id, row_number() OVER (ORDER BY md5(id::text)) AS rn FROM gallery_media
                                    ORDER BY md5(id::text) LIMIT %s) AS m
            JOIN gallery_tag t ON t.owner_id = %s AND t.name = 'tag ' || (m.rn %% %s)""", (TAGGED, owner, TAGS))
        conn.commit()
    with psycopg.connect(opts.database_url, autocommit=True) as conn:
        for table in ("gallery_media", "gallery_variant", "gallery_album_media", "gallery_media_tags",
                      "gallery_timelineday", "gallery_kindusage"):
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))
        conn.execute(sql.SQL("COMMENT ON TABLE gallery_media IS {}").format(sql.Literal(fingerprint(opts))))
    print(f"  seeded in {time.monotonic() - started:.0f} s", flush=True)


# --- The cases: each returns the path of one request ---------------------------------------
@dataclass
class Facts:
    months: list[str]
    album_id: int
    rng: random.Random


def me(facts: Facts) -> str:
    return "/api/v1/me/"


def buckets(facts: Facts) -> str:
    return "/api/v1/timeline/buckets/?size=month"


def bucket_first_page(facts: Facts) -> str:
    return f"/api/v1/media/?bucket={facts.rng.choice(facts.months)}"


def album_page(facts: Facts) -> str:
    return f"/api/v1/albums/{facts.album_id}/media/"


@dataclass
class Case:
    name: str
    path: Callable[[Facts], str]
    goal_p95_ms: float | None


CASES = [
    Case("reference: /api/v1/me/", me, None),
    Case("buckets (month)", buckets, 50),
    Case("a bucket's first page (100)", bucket_first_page, 20),
    Case("an album page (100 of 10,000)", album_page, 20),
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def measure(opts: argparse.Namespace) -> dict[str, dict[str, float]]:
    import django

    django.setup()
    from django.test import Client

    from gallery.models import Album, User
    from gallery.services.accounts import apikey_create

    user = User.objects.get(username="bench")
    _, raw = apikey_create(user=user, name="bench-timeline", scopes=["media.read"])
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}", HTTP_HOST="localhost")
    first = client.get("/api/v1/timeline/buckets/?size=month").json()["buckets"]
    facts = Facts(months=[b["bucket"] for b in first], rng=random.Random(1),
                  album_id=Album.objects.get(owner=user, title="Bench album").pk)
    figures = {}
    for case in CASES:
        for _ in range(10):  # warm-up: the pool, the caches, PostgreSQL's buffers
            client.get(case.path(facts))
        samples = []
        cpu = time.process_time()
        for _ in range(opts.requests):
            path = case.path(facts)
            started = time.perf_counter()
            response = client.get(path)
            samples.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"GET {path}: {response.status_code} {response.content[:300]!r}")
        cpu_ms = (time.process_time() - cpu) * 1000 / opts.requests
        body = response.json()
        figures[case.name] = {"p50": statistics.median(samples), "p95": percentile(samples, 95), "n": len(samples),
                              "cpu_ms": cpu_ms, "items": len(body.get("results", body.get("buckets", []))),
                              "count": body.get("count")}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--million", type=int, default=1_000_000, help="media to seed")
    parser.add_argument("--variants", type=int, default=10, choices=range(1, len(LEVELS) + 1), metavar="1..10")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per case")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--reseed", action="store_true", help="seed again even if the database matches")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    opts = parser.parse_args()
    drop = ("DATABASE_", "REDIS_URL", "S3_", "STORAGE_BACKEND", "JOBS_MODE", "SEARCH_BACKEND", "DEBUG")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(DATABASE_URL=opts.database_url, DATABASE_POOL="true", LOG_LEVEL="warning",
               DJANGO_SETTINGS_MODULE="config.settings")
    if opts.reseed or not seeded(opts.database_url, fingerprint(opts)):
        print(f"seeding {opts.million} media x {opts.variants} variants on PostgreSQL (once)", flush=True)
        seed(opts, env)
    else:
        print(f"reusing the seeded {opts.million} media", flush=True)
    os.environ.clear()
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    figures = measure(opts)
    reference = figures[CASES[0].name]
    print(f"\nDjango test client in one process, PostgreSQL, {opts.million} media, {opts.requests} requests per case")
    print("(wall time per request; 'CPU' is this process's CPU per request, PostgreSQL's own not included:")
    print(" on a shared machine wall times move with the neighbours' load, CPU hardly does)")
    print(f"{'case':34}{'p50 ms':>9}{'p95 ms':>9}{'p95/ref':>9}{'CPU ms':>8}{'items':>7}{'count':>9}  goal (p95)  met")
    for case in CASES:
        fig = figures[case.name]
        met = "" if case.goal_p95_ms is None else ("yes" if fig["p95"] < case.goal_p95_ms else "NO")
        goal = "" if case.goal_p95_ms is None else f"< {case.goal_p95_ms:g} ms"
        count = "" if fig["count"] is None else str(fig["count"])
        print(f"{case.name:34}{fig['p50']:9.2f}{fig['p95']:9.2f}{fig['p95'] / reference['p95']:9.2f}{fig['cpu_ms']:8.2f}"
              f"{fig['items']:7}{count:>9}  {goal:10}  {met}")
    if opts.json:
        opts.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
