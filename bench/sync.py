"""Phone sync at a million media: GET /api/v1/sync/ pages of 500 on PostgreSQL.

    .venv/bin/python bench/sync.py [--million 1000000] [--tombstones 10000] [--rounds 3] [--requests 40]

Seeds --million media of one user with 10 variants each into PostgreSQL at --database-url
(default postgresql://postgres@127.0.0.1:5432/bench_sync) with COPY, through bench/browse.py's
seeding (0.5 % of them trashed), then one change row per media plus --tombstones deletions,
numbered in a random order (the worst case for the media lookups: a page's 500 media lie
anywhere in the table, where real changes mostly follow uploads). The seed is reused while
its fingerprint matches. One `manage.py run --no-worker` (DATABASE_POOL=true) answers.

Per round, over one keep-alive connection with an API key:
- sync: GET /api/v1/sync/?page_size=500&cursor=<random cursor>, --requests times;
- reference: GET /api/v1/media/?page_size=500, the media list's first page: the same
  serializer and page size, so the ratio is the cost of the change log;
- floor: GET /api/v1/me/ (any authenticated API request).
Prints p50/p95 and the server's CPU per request for each round, then median [range] over the
rounds, the sync/list ratio and the goal (p95 < 100 ms).
The machine may be shared: compare ratios, not absolute times, between runs.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
import browse  # noqa: E402  (bench/browse.py: processes, seeding, the timing client)

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/bench_sync"
PAGE = 500
GOAL_P95_MS = 100.0
# The levels a photo gets, with sizes like the pipeline's (the bytes are never read).
VARIANTS = {level: {"level": level, "width": side, "height": side, "size": max(200, side * side // 10),
                    "content_type": "image/webp"}
            for level, side in (("3s", 160), ("4s", 320), ("2s", 40), ("1s", 10), ("1", 10), ("2", 40), ("3", 160),
                                ("4", 320), ("5", 640), ("6", 1080))}

SEED_CHANGES = """
WITH entries AS (
    SELECT owner_id, id AS media_id, false AS deleted FROM gallery_media
    UNION ALL
    SELECT (SELECT id FROM gallery_user WHERE username = 'bench'), gen_random_uuid(), true
    FROM generate_series(1, %(tombstones)s)
)
INSERT INTO gallery_mediachange (owner_id, media_id, seq, deleted, changed_at)
SELECT owner_id, media_id, ROW_NUMBER() OVER (ORDER BY md5(media_id::text)), deleted, now() FROM entries
"""


def seed_changes(dsn: str, tombstones: int, mark: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn) as conn:
        comment = conn.execute("SELECT obj_description('gallery_mediachange'::regclass, 'pg_class')").fetchone()[0]
        if comment == mark:
            return
        started = time.monotonic()
        conn.execute("DELETE FROM gallery_mediachange")
        conn.execute("DELETE FROM gallery_syncclock")
        conn.execute(SEED_CHANGES, {"tombstones": tombstones})
        conn.execute("INSERT INTO gallery_syncclock (owner_id, seq, pruned_seq) "
                     "SELECT owner_id, MAX(seq), 0 FROM gallery_mediachange GROUP BY owner_id")
        conn.execute(sql.SQL("COMMENT ON TABLE gallery_mediachange IS {}").format(sql.Literal(mark)))
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE gallery_mediachange")
    print(f"  change rows seeded in {time.monotonic() - started:.0f} s", flush=True)


def measure(client: browse.Client, path_of, n: int, server: int) -> dict[str, float]:
    """p50/p95 wall time, and the server's CPU per request (user + system of its process group:
    on a shared machine it moves far less with the neighbours' load than wall time does)."""
    samples, cpu = [], browse.group_cpu(server)
    for _ in range(n):
        browse.left(120)
        ms, status, body = client.get(path_of())
        if status != 200:
            raise SystemExit(f"{status} {body[:300]!r}")
        samples.append(ms)
    return {"p50": statistics.median(samples), "p95": browse.percentile(samples, 95),
            "cpu": (browse.group_cpu(server) - cpu) * 1000 / n}


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):7.1f} [{min(values):.1f}-{max(values):.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--million", type=int, default=1_000_000)
    parser.add_argument("--tombstones", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=40, help="requests per figure and round")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    opts = parser.parse_args()
    browse.DEADLINE = time.monotonic() + 1800  # seeding a million rows included
    browse.WORK.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="sync-", dir=browse.WORK))
    try:
        env = {**browse.base_env(workdir / "data"), "DATABASE_URL": opts.database_url, "DATABASE_POOL": "true"}
        seed_opts = SimpleNamespace(million=opts.million, variants=len(VARIANTS), database_url=opts.database_url)
        mark = browse.fingerprint(seed_opts, VARIANTS)
        if browse.seeded(opts.database_url, mark):
            print(f"PostgreSQL: reusing {opts.million} seeded media", flush=True)
            browse.manage(env, "migrate", "--noinput", cap=300)
        else:
            print(f"PostgreSQL: seeding {opts.million} media x {len(VARIANTS)} variants (once)", flush=True)
            browse.seed_postgres(seed_opts, env, VARIANTS, mark)
        seed_changes(opts.database_url, opts.tombstones, json.dumps({"media": mark, "tombstones": opts.tombstones}))
        apikey = browse.manage(env, "apikey", "create", "bench", "--name", "bench-sync").strip().splitlines()[-1]
        port = browse.free_port()
        rng = random.Random(7)
        top = opts.million + opts.tombstones
        rounds = []
        with browse.chipmunk(env, port, workdir) as server:
            client = browse.Client(port, {"Authorization": f"Bearer {apikey}"})
            _, first = client.json(f"/api/v1/sync/?page_size={PAGE}")
            if len(first["upserted"]) + len(first["deleted"]) != PAGE or not first["has_more"]:
                raise SystemExit(f"unexpected first page: {len(first['upserted'])} + {len(first['deleted'])}")
            print(f"first page: {len(first['upserted'])} upserted, {len(first['deleted'])} deleted, "
                  f"{len(first['upserted'][0]['variants'])} variants each", flush=True)
            measure(client, lambda: "/api/v1/me/", 10, server.pid)  # warm-up
            for number in range(1, opts.rounds + 1):
                figures = {
                    "sync": measure(client, lambda: f"/api/v1/sync/?page_size={PAGE}&cursor={rng.randrange(top - PAGE)}",
                                    opts.requests, server.pid),
                    "list": measure(client, lambda: f"/api/v1/media/?page_size={PAGE}", opts.requests, server.pid),
                    "me": measure(client, lambda: "/api/v1/me/", opts.requests, server.pid),
                }
                rounds.append(figures)
                print(f"round {number}: " + "  ".join(
                    f"{name} p50 {f['p50']:.1f} p95 {f['p95']:.1f} CPU {f['cpu']:.1f} ms"
                    for name, f in figures.items()), flush=True)
        print(f"\n{opts.million} media, {opts.tombstones} tombstones, pages of {PAGE}; "
              f"median [range] of {opts.rounds} rounds x {opts.requests} requests")
        print(f"{'':28}{'p50 ms':>22}{'p95 ms':>22}{'server CPU ms/req':>24}")
        labels = {"sync": "sync page (ours)", "list": "media list page (reference)", "me": "/api/v1/me/ (floor)"}
        for name, label in labels.items():
            print(f"{label:28}{summary([r[name]['p50'] for r in rounds]):>22}"
                  f"{summary([r[name]['p95'] for r in rounds]):>22}{summary([r[name]['cpu'] for r in rounds]):>24}")
        ratios = [r["sync"]["p95"] / r["list"]["p95"] for r in rounds]
        p95 = statistics.median(r["sync"]["p95"] for r in rounds)
        print(f"sync/list p95 ratio: {summary(ratios).strip()}; goal sync p95 < {GOAL_P95_MS:.0f} ms: "
              f"{'met' if p95 < GOAL_P95_MS else 'NOT met'} ({p95:.1f} ms)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
