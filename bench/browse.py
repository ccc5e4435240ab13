"""Fast browsing: grid thumbnails against nginx, and the media list at 1k (SQLite) and 1M (PostgreSQL).

    .venv/bin/python bench/browse.py [--million 1000000] [--variants 10] [--duration 10] [--skip-pg] [--list-only]
                                     [--json out.json]
    .venv/bin/python bench/browse.py --skip-sqlite --thumbnails-only   # PostgreSQL's thumbnails alone

Needs wrk (`apt-get install -y wrk`), Debian's nginx (`apt-get install -y nginx`) and, for
the PostgreSQL half, a server at --database-url (default postgresql://postgres@127.0.0.1:5432/bench_browse;
the database is created, and dropped and made again when its rows are not the ones asked for).

Two instances, each served by `manage.py run --no-worker` with the defaults of `manage.py run`
(WEB_WORKERS=1: one uvicorn process; the job worker is left out, it would only poll):
1. embedded: SQLite and local disk in a temporary CHIPMUNK_DATA_DIR under bench/.work/
   (git-ignored). One real photo of the corpus goes through `import_folder` (inline jobs), so
   its variants are the pipeline's own files; 1k media with 10 variants each are added
   with bulk_create.
2. PostgreSQL (DATABASE_POOL=true): --million media and --variants variants each, written
   with COPY once and reused while their count and fingerprint match; the counters
   (gallery_kindusage, used_bytes) are computed from the rows, as migration 0004 does.

Thumbnails: the 3s level (the grid's square) through wrk, 32 keep-alive connections for
--duration seconds, with a session cookie and with an API key, and nginx (one worker,
sendfile) sending the same file from disk: requests/s, p50/p99, ratio ours/nginx (goal
>= 0.1, p99 < 50 ms); then one connection: ms per request. Beside each, the server's CPU
per request (its process group's user + system time over the requests): on a shared machine
wall times move with the neighbours' load, CPU per request hardly does. With PostgreSQL it
leaves out the database's own processes; with SQLite the database is in the web process.
Media list: GET /api/v1/media/?page_size=100 with an API key over one keep-alive
connection, first page and the 20 pages after it (following `next`) per round: p50/p95,
beside GET /api/v1/me/ on the same server (the floor of any API request). /api/v1/usage/
likewise. A summary table ends the run. Every step has a deadline; a default run takes
five to ten minutes (two to three more the first time, to seed the million rows).
Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
PYTHON = sys.executable
PHOTO = ROOT.parent / "shared" / "corpus" / "jpg" / "gps" / "DSCN0025.jpg"  # its 3s is ~3.7 kB
PASSWORD = "bench-browse-password"
GRID_LEVEL = "3s"
# What the pipeline makes of a photo, the grid's levels first: --variants N seeds the first N.
LEVELS = ("3s", "4s", "2s", "1s", "1", "2", "3", "4", "5", "6")
PAGE_SIZE, FOLLOWING_PAGES = 100, 20
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/bench_browse"
DEADLINE = time.monotonic() + 900  # the whole run, seeding a million rows included


def left(cap: float) -> float:
    """Seconds a step may take: its own cap, or what is left of the run's."""
    remaining = DEADLINE - time.monotonic()
    if remaining <= 5:
        raise SystemExit("bench: out of time")
    return min(cap, remaining)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


# --- Processes ---------------------------------------------------------------------------
@contextmanager
def process(args: list[str], *, port: int, log: Path, env: dict | None = None):
    """A server in its own process group, its output in `log`, stopped on the way out."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=out, start_new_session=True)
    try:
        if not wait_for_port(port, left(60)):
            proc.kill()
            raise SystemExit(f"{args[1:3]} did not listen on {port}:\n{log.read_text()[-3000:]}")
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


SERVER_ENV: dict[str, str] = {}  # --env: settings for the measured server only


def chipmunk(env: dict, port: int, workdir: Path):
    """`manage.py run` as a user starts it (its uvicorn options, WEB_WORKERS), minus the worker."""
    return process([PYTHON, "manage.py", "run", "--no-worker"], port=port, log=workdir / "chipmunk.log",
                    env={**env, **SERVER_ENV, "PORT": str(port), "BIND_ADDRESS": "127.0.0.1"})


def nginx(workdir: Path, root: Path, port: int):
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(binary, os.X_OK):
        raise SystemExit("nginx is missing: apt-get install -y nginx")
    conf = workdir / "nginx.conf"
    # One worker, as we run one web process; keep-alive for as long as the run, as uvicorn does.
    conf.write_text(f"""
daemon off; worker_processes 1; {"user root;" if os.geteuid() == 0 else ""}
pid {workdir}/nginx.pid; error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    default_type application/octet-stream; types {{ image/webp webp; }}
    access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000; keepalive_timeout 75s;
    client_body_temp_path {workdir}/b; proxy_temp_path {workdir}/p; fastcgi_temp_path {workdir}/f;
    uwsgi_temp_path {workdir}/u; scgi_temp_path {workdir}/s;
    server {{ listen 127.0.0.1:{port}; location /files/ {{ alias {root}/; }} }}
}}""")
    return process([binary, "-e", f"{workdir}/nginx-error.log", "-c", str(conf)], port=port,
                   log=workdir / "nginx.log")


def manage(env: dict, *args: str, cap: float = 120) -> str:
    result = subprocess.run([PYTHON, "manage.py", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=left(cap), check=False)
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def base_env(data_dir: Path) -> dict:
    """The embedded defaults: whatever this shell sets for the database, Redis, S3 or workers is dropped."""
    dropped = ("DATABASE_", "REDIS_URL", "S3_", "BLOB_CACHE", "WEB_WORKERS", "STORAGE_BACKEND", "DELIVERY_MODE",
               "JOBS_MODE", "SEARCH_BACKEND", "OIDC_", "DEBUG")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(CHIPMUNK_DATA_DIR=str(data_dir), LOG_LEVEL="warning")
    return env


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group: what a
    request costs whatever else the (shared) machine runs, unlike its wall time."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


# --- Load: wrk for many connections, http.client for one request at a time --------------
def wrk_bin() -> str:
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    return binary


def _duration_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(url: str, headers: dict[str, str], *, connections: int, seconds: int, server: int) -> dict[str, float]:
    """requests/s, p50 and p99 in ms of `seconds` of GETs over `connections` keep-alive connections,
    and the CPU ms per request of the server (process group `server`)."""
    args = [wrk_bin(), "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    cpu = group_cpu(server)
    out = subprocess.run(args + [url], capture_output=True, text=True, timeout=left(seconds + 30),
                         check=False).stdout
    cpu = group_cpu(server) - cpu
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if bad or errors:
        raise SystemExit(f"wrk {url}: {bad.group(0) if bad else ''} {errors.group(0) if errors else ''}\n{out}")
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.MULTILINE))
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if set(latency) != {"50", "99"} or rate is None:
        raise SystemExit(f"wrk {url}: cannot read its output:\n{out}")
    rate = float(rate.group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rate, "p50": _duration_ms(latency["50"]), "p99": _duration_ms(latency["99"]),
            "ms_per_request": 1000 / rate, "cpu_ms": cpu * 1000 / requests}


class Client:
    """One keep-alive connection to our server; `get` times one request to its last byte."""

    def __init__(self, port: int, headers: dict[str, str]):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = headers

    def get(self, path: str) -> tuple[float, int, bytes]:
        started = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        return (time.perf_counter() - started) * 1000, response.status, body

    def json(self, path: str) -> tuple[float, dict]:
        ms, status, body = self.get(path)
        if status != 200:
            raise SystemExit(f"GET {path}: {status} {body[:300]!r}")
        return ms, json.loads(body)


def session_cookie(port: int) -> str:
    """Log in through the website's form, as a browser does: the sessionid cookie."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/login/")
    response = conn.getresponse()
    page = response.read().decode()
    csrf_cookie = re.search(r"csrftoken=([^;]+)", response.getheader("Set-Cookie") or "").group(1)
    form_token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    body = f"username=bench&password={PASSWORD}&csrfmiddlewaretoken={form_token}"
    conn.request("POST", "/login/", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={csrf_cookie}"})
    response = conn.getresponse()
    response.read()
    cookies = " ".join(v for k, v in response.getheaders() if k.lower() == "set-cookie")
    match = re.search(r"sessionid=([^;]+)", cookies)
    if response.status != 302 or match is None:
        raise SystemExit(f"login failed: {response.status}")
    return f"sessionid={match.group(1)}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def timed(client: Client, path: str, n: int, server: int) -> dict[str, float]:
    cpu, samples = group_cpu(server), []
    for _ in range(n):
        left(60)
        ms, status, body = client.get(path)
        if status != 200:
            raise SystemExit(f"GET {path}: {status} {body[:300]!r}")
        samples.append(ms)
    cpu_ms = (group_cpu(server) - cpu) * 1000 / n
    return {"p50": statistics.median(samples), "p95": percentile(samples, 95), "n": n, "cpu_ms": cpu_ms}


# --- Measurements ------------------------------------------------------------------------
def bench_thumbnails(ours_server: subprocess.Popen, nginx_server: subprocess.Popen, port: int, nginx_port: int,
                     token: str, key: str, blob: bytes, cookie: str, apikey: str,
                     seconds: int) -> dict[str, dict[str, float]]:
    ours = f"http://127.0.0.1:{port}/m/{token}/{GRID_LEVEL}/"
    theirs = f"http://127.0.0.1:{nginx_port}/files/{key}"
    credentials = {"session": {"Cookie": cookie}, "api key": {"Authorization": f"Bearer {apikey}"}}
    for who, headers in credentials.items():  # the bytes we send are the pipeline's file
        _, status, body = Client(port, headers).get(f"/m/{token}/{GRID_LEVEL}/")
        if status != 200 or body != blob:
            raise SystemExit(f"thumbnail with {who}: status {status}, {len(body)} bytes, not the file's")
    results = {}
    for connections, duration in ((32, seconds), (1, max(3, seconds // 2))):
        for who, url, headers in (("nginx", theirs, {}), *((w, ours, h) for w, h in credentials.items())):
            server = (nginx_server if who == "nginx" else ours_server).pid
            wrk(url, headers, connections=connections, seconds=1, server=server)  # warm-up: connections, pools
            results[f"{who} c{connections}"] = wrk(url, headers, connections=connections, seconds=duration,
                                                   server=server)
            print(f"  {who:8} {connections:2} conn: {results[f'{who} c{connections}']['rps']:8.0f} req/s", flush=True)
    return results


def bench_list(server: subprocess.Popen, port: int, apikey: str, *, expect_count: int, rounds: int,
               usage_n: int) -> dict[str, dict]:
    client = Client(port, {"Authorization": f"Bearer {apikey}"})
    timed(client, "/api/v1/me/", 20, server.pid)  # warm-up
    # One list request too: a new process's first one pays its imports and compiled queries,
    # and as one of the few first-page samples it would be their p95.
    timed(client, f"/api/v1/media/?page_size={PAGE_SIZE}", 1, server.pid)
    results = {"me": timed(client, "/api/v1/me/", usage_n, server.pid)}
    first, following, cpu = [], [], group_cpu(server.pid)
    for _ in range(rounds):
        path = f"/api/v1/media/?page_size={PAGE_SIZE}"
        for page in range(FOLLOWING_PAGES + 1):
            left(60)
            ms, data = client.json(path)
            if data["count"] != expect_count or not data["results"]:
                raise SystemExit(f"{path}: count {data['count']} (expected {expect_count}), "
                                 f"{len(data['results'])} results")
            (following if page else first).append(ms)
            if not data["next"]:
                break
            path = urlsplit(data["next"])._replace(scheme="", netloc="").geturl()
    cpu_ms = (group_cpu(server.pid) - cpu) * 1000 / (len(first) + len(following))
    variants = len(data["results"][0]["variants"])
    results["first"] = {"p50": statistics.median(first), "p95": percentile(first, 95), "n": len(first),
                        "cpu_ms": cpu_ms}
    results["following"] = {"p50": statistics.median(following), "p95": percentile(following, 95),
                            "n": len(following), "variants": variants, "cpu_ms": cpu_ms}
    results["usage"] = timed(client, "/api/v1/usage/", usage_n, server.pid)
    return results


# --- The embedded instance ---------------------------------------------------------------
SEED_SQLITE = """
import random, uuid
from datetime import UTC, datetime, timedelta
from gallery.models import Media, User, Variant
from django.db import transaction
user = User.objects.get(username="bench")
real = Media.objects.get(owner=user)
levels = list(real.variants.values("level", "width", "height", "size", "content_type"))
rng = random.Random(1)
start = datetime(2015, 1, 1, tzinfo=UTC)
with transaction.atomic():
    media = [Media(owner=user, kind="image", original_filename=f"IMG_{i:07d}.jpg", content_type="image/jpeg",
                   size=rng.randrange(1_500_000, 6_000_000), sha256="%%064x" %% rng.getrandbits(256), status="ready",
                   taken_at=start + timedelta(seconds=rng.randrange(0, 10 * 365 * 86400)), taken_at_estimated=False,
                   width=4000, height=3000, camera_make="Canon", camera_model="Canon EOS 40D",
                   original_key=f"{user.pk}/library/originals/bench/{i}.jpg") for i in range(%d)]
    Media.objects.bulk_create(media, batch_size=500)
    Variant.objects.bulk_create([Variant(media=m, storage_key=f"{user.pk}/library/variants/{m.pk}/{v['level']}-bench.webp",
                                         **v) for m in media for v in levels], batch_size=1000)
"""

# Counters and used bytes from the rows, the way migration 0004 counts what exists.
RECOUNT = """
from django.db import connection, transaction
with transaction.atomic(), connection.cursor() as cursor:
    cursor.execute("DELETE FROM gallery_kindusage")
    cursor.execute(\"\"\"INSERT INTO gallery_kindusage (owner_id, kind, place, count, bytes)
        SELECT owner_id, kind, CASE WHEN in_vault THEN 'vault' WHEN trashed_at IS NOT NULL THEN 'trash'
        ELSE 'library' END AS place, COUNT(*), SUM(size) FROM gallery_media GROUP BY 1, 2, 3\"\"\")
    cursor.execute("UPDATE gallery_user SET used_bytes = COALESCE((SELECT SUM(size) FROM gallery_media "
                   "WHERE owner_id = gallery_user.id), 0)")
"""


def new_user(env: dict) -> str:
    manage(env, "createuser", "bench", "--password", PASSWORD, "--quota", "100000TB")
    return manage(env, "apikey", "create", "bench", "--name", "bench-browse").strip().splitlines()[-1]


def embedded(opts: argparse.Namespace, workdir: Path) -> tuple[dict, dict]:
    """The SQLite instance: the real photo, 1k media, its thumbnails and list. Returns (figures, grid)."""
    data_dir = workdir / "sqlite"
    env = {**base_env(data_dir), "JOBS_MODE": "inline"}
    manage(env, "migrate", "--noinput")
    apikey = new_user(env)
    photos = workdir / "photos"
    photos.mkdir()
    shutil.copy(PHOTO, photos)
    manage(env, "import_folder", str(photos), "--user", "bench")
    manage(env, "shell", "-c", SEED_SQLITE % (opts.thousand - 1))
    manage(env, "shell", "-c", RECOUNT)
    out = manage(env, "shell", "-c", "from gallery.models import Variant; import json; print('JSON' + json.dumps("
                 f"list(Variant.objects.filter(media__original_filename={PHOTO.name!r}).values('level', 'width', "
                 "'height', 'size', 'content_type', 'storage_key', 'media__token'))))")
    variants = {v["level"]: v for v in json.loads(out.split("JSON", 1)[1])}
    grid = variants[GRID_LEVEL]
    files = {level: (data_dir / "media" / v["storage_key"]).read_bytes() for level, v in variants.items()}
    print(f"embedded (SQLite): {opts.thousand} media; grid thumbnail {GRID_LEVEL} {grid['width']}x{grid['height']}, "
          f"{grid['size']} bytes", flush=True)
    if opts.skip_sqlite:  # its photo's files are still what PostgreSQL's instance serves
        return None, {"variants": variants, "files": files}
    port = free_port()
    figures = {}
    with chipmunk(env, port, workdir) as ours:
        if not opts.list_only:
            nginx_port = free_port()
            with nginx(workdir, data_dir / "media", nginx_port) as theirs:
                figures["thumb"] = bench_thumbnails(ours, theirs, port, nginx_port, grid["media__token"],
                                                    grid["storage_key"], files[GRID_LEVEL], session_cookie(port),
                                                    apikey, opts.duration)
        if not opts.thumbnails_only:
            figures["list"] = bench_list(ours, port, apikey, expect_count=opts.thousand, rounds=opts.rounds,
                                         usage_n=opts.requests)
    return figures, {"variants": variants, "files": files}


# --- The PostgreSQL instance -------------------------------------------------------------
MEDIA_COLUMNS = ("id", "owner_id", "kind", "original_filename", "content_type", "size", "sha256", "status", "error",
                 "taken_at", "taken_at_offset_minutes", "taken_at_estimated", "width", "height", "duration",
                 "latitude", "longitude", "altitude", "place_city", "place_region", "place_country", "camera_make",
                 "camera_model", "exif", "details", "trashed_at", "in_vault", "original_key", "token",
                 "created_at", "updated_at", "description", "taken_at_manual", "location_manual", "taken_day",
                 "taken_month")
VARIANT_COLUMNS = ("media_id", "level", "width", "height", "size", "content_type", "storage_key", "created_at")
TRASHED_EVERY = 200  # 0.5 % of the rows are in the trash: the list must skip them
CHUNK = 20_000


def seed_levels(opts: argparse.Namespace, variants: dict) -> list[dict]:
    return [variants[level] for level in LEVELS[: opts.variants]]


def fingerprint(opts: argparse.Namespace, variants: dict) -> str:
    levels = [[v["level"], v["width"], v["height"], v["size"], v["content_type"]] for v in seed_levels(opts, variants)]
    return json.dumps({"seed": 3, "media": opts.million, "levels": levels}, sort_keys=True)


def comparable(mark: str | None) -> dict | None:
    """A fingerprint less the sizes of the levels other than the grid's: the pipeline's WebP of
    the larger levels is not byte-stable from one import to the next (44 or 55 kB for the same
    photo), and only the grid's file is served against its row; the list shows them as numbers."""
    try:
        parsed = json.loads(mark)
    except (TypeError, ValueError):
        return None
    parsed["levels"] = [level if level[0] == GRID_LEVEL else level[:3] + level[4:] for level in parsed["levels"]]
    return parsed


def seeded(dsn: str, expect: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            comment = conn.execute("SELECT obj_description('gallery_media'::regclass, 'pg_class')").fetchone()[0]
            if comparable(comment) != comparable(expect):
                print(f"  seeded as {comment}, this run needs {expect}", flush=True)
                return False
            media = conn.execute("SELECT COUNT(*) FROM gallery_media").fetchone()[0]
            usage = conn.execute("SELECT COALESCE(SUM(count), 0) FROM gallery_kindusage").fetchone()[0]
            return media == usage == json.loads(expect)["media"]
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable):
        return False


def recreate_database(dsn: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(dsn)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def seed_postgres(opts: argparse.Namespace, env: dict, variants: dict, mark: str) -> None:
    """--million media of one user and their variants, with COPY; then counters and statistics."""
    import psycopg
    from psycopg import sql

    started = time.monotonic()
    recreate_database(opts.database_url)
    manage(env, "migrate", "--noinput", cap=300)
    manage(env, "createuser", "bench", "--password", PASSWORD, "--quota", "100000TB")
    levels = seed_levels(opts, variants)
    rng = random.Random(1)
    now = datetime.now(UTC).isoformat()
    start = datetime(2015, 1, 1, tzinfo=UTC)
    with psycopg.connect(opts.database_url) as conn:
        owner = conn.execute("SELECT id FROM gallery_user WHERE username = 'bench'").fetchone()[0]
        # Rows are consistent by construction: skip the per-row foreign key triggers.
        conn.execute("SET session_replication_role = replica")
        # Indexes that are not constraints are built once at the end (a sort, not a million inserts).
        plain = conn.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid "
            "WHERE i.indrelid IN ('gallery_media'::regclass, 'gallery_variant'::regclass) AND c.oid IS NULL").fetchall()
        for name, _ in plain:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        # Ids in ascending order: the primary key and the (media, level) constraint grow at their right edge.
        ids = sorted(rng.getrandbits(128) for _ in range(opts.million))
        variant_template = "".join(
            f"{{0}}\t{level['level']}\t{level['width']}\t{level['height']}\t{level['size']}\t{level['content_type']}"
            f"\t{owner}/library/variants/{{0}}/{level['level']}-bench.webp\t{now}\n" for level in levels)
        media_copy = f"COPY gallery_media ({', '.join(MEDIA_COLUMNS)}) FROM STDIN"
        variant_copy = f"COPY gallery_variant ({', '.join(VARIANT_COLUMNS)}) FROM STDIN"
        done = 0
        while done < opts.million:
            left(300)
            media_lines, variant_lines = [], []
            for i in range(done, min(done + CHUNK, opts.million)):
                media_id = uuid.UUID(int=ids[i], version=4)
                taken_at = start + timedelta(seconds=rng.randrange(0, 10 * 365 * 86400))
                taken, day = taken_at.isoformat(), (taken_at + timedelta(hours=1)).date()  # local: offset 60
                trashed = now if i % TRASHED_EVERY == TRASHED_EVERY - 1 else r"\N"
                token = f"{rng.getrandbits(128):032x}"[:22]
                media_lines.append(
                    f"{media_id}\t{owner}\timage\tIMG_{i:07d}.jpg\timage/jpeg\t{rng.randrange(1_500_000, 6_000_000)}\t"
                    f"{rng.getrandbits(256):064x}\tready\t\t{taken}\t60\tf\t4000\t3000\t\\N\t"
                    f"48.85\t2.35\t35.0\tParis\tÎle-de-France\tFrance\tCanon\tCanon EOS 40D\t{{}}\t{{}}\t"
                    f"{trashed}\tf\t{owner}/library/originals/bench/{i}.jpg\t{token}\t{now}\t{now}\t\tf\tf\t{day}\t"
                    f"{day.replace(day=1)}\n")
                variant_lines.append(variant_template.format(media_id))
            with conn.cursor() as cur:
                with cur.copy(media_copy) as copy:
                    copy.write("".join(media_lines))
                with cur.copy(variant_copy) as copy:
                    copy.write("".join(variant_lines))
            done += len(media_lines)
            if done % 200_000 == 0 or done == opts.million:
                print(f"  seeded {done} media in {time.monotonic() - started:.0f} s", flush=True)
        for _, definition in plain:
            left(300)
            conn.execute(definition)
        conn.commit()
    manage(env, "shell", "-c", RECOUNT, cap=300)
    with psycopg.connect(opts.database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE gallery_media")
        conn.execute("VACUUM ANALYZE gallery_variant")
        conn.execute("VACUUM ANALYZE gallery_kindusage")
        conn.execute(f"COMMENT ON TABLE gallery_media IS {sql.quote(mark)}")
    print(f"  seeded in {time.monotonic() - started:.0f} s", flush=True)


def postgres(opts: argparse.Namespace, workdir: Path, grid: dict) -> dict:
    import psycopg

    data_dir = workdir / "pg"
    env = {**base_env(data_dir), "DATABASE_URL": opts.database_url, "DATABASE_POOL": "true"}
    mark = fingerprint(opts, grid["variants"])
    if seeded(opts.database_url, mark):
        print(f"PostgreSQL: reusing {opts.million} seeded media", flush=True)
        manage(env, "migrate", "--noinput", cap=300)
    else:
        print(f"PostgreSQL: seeding {opts.million} media x {opts.variants} variants (once)", flush=True)
        global DEADLINE
        started, deadline = time.monotonic(), DEADLINE
        DEADLINE += 3600  # seeding has its own budget (and left(300) per step)
        seed_postgres(opts, env, grid["variants"], mark)
        DEADLINE = deadline + time.monotonic() - started
    with psycopg.connect(opts.database_url) as conn:
        # The newest media, the first tile of the grid; its 3s row has the real file's size.
        token, key = conn.execute(
            "SELECT m.token, v.storage_key FROM gallery_media m JOIN gallery_variant v ON v.media_id = m.id "
            "WHERE v.level = %s AND m.trashed_at IS NULL ORDER BY m.taken_at DESC, m.id DESC LIMIT 1",
            (GRID_LEVEL,)).fetchone()
        visible = conn.execute("SELECT SUM(count) FROM gallery_kindusage WHERE place = 'library'").fetchone()[0]
    target = data_dir / "media" / key
    target.parent.mkdir(parents=True)
    target.write_bytes(grid["files"][GRID_LEVEL])
    apikey = manage(env, "apikey", "create", "bench", "--name", "bench-browse").strip().splitlines()[-1]
    port = free_port()
    print(f"PostgreSQL (DATABASE_POOL=true): {opts.million} media, {visible} in the library", flush=True)
    figures = {}
    with chipmunk(env, port, workdir) as ours:
        if not opts.list_only:
            nginx_port = free_port()
            with nginx(workdir, data_dir / "media", nginx_port) as theirs:
                figures["thumb"] = bench_thumbnails(ours, theirs, port, nginx_port, token, key,
                                                    grid["files"][GRID_LEVEL], session_cookie(port), apikey,
                                                    opts.duration)
        if not opts.thumbnails_only:
            figures["list"] = bench_list(ours, port, apikey, expect_count=visible, rounds=opts.rounds,
                                         usage_n=opts.requests)
    return figures


# --- Report ------------------------------------------------------------------------------
def print_thumbnails(label: str, thumb: dict) -> list[tuple]:
    print(f"\nthumbnails, {label}: 32 connections{'':9}| 1 connection")
    print(f"  {'':10}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>11} |{'ms/req':>8}{'CPU ms/req':>11}")
    for who in ("nginx", "session", "api key"):
        many, one = thumb[f"{who} c32"], thumb[f"{who} c1"]
        print(f"  {who:10}{many['rps']:8.0f}{many['p50']:9.2f}{many['p99']:9.2f}{many['cpu_ms']:11.3f} |"
              f"{one['ms_per_request']:8.3f}{one['cpu_ms']:11.3f}")
    rows = []
    for who in ("session", "api key"):
        many, ref = thumb[f"{who} c32"], thumb["nginx c32"]
        ratio = many["rps"] / ref["rps"]
        print(f"  ratio ours/nginx ({who}): {ratio:.3f} (goal >= 0.1); p99 {many['p99']:.1f} ms (goal < 50 ms)")
        rows += [(f"{label}: thumbnail req/s, {who}, 32 conn", f"{many['rps']:.0f}", f"nginx {ref['rps']:.0f}",
                  "ours/nginx >= 0.1", f"{ratio:.3f}", ratio >= 0.1),
                 (f"{label}: thumbnail p99, {who}", f"{many['p99']:.1f} ms", f"nginx {ref['p99']:.2f} ms",
                  "< 50 ms", "", many["p99"] < 50),
                 (f"{label}: thumbnail p50, {who}", f"{many['p50']:.2f} ms", f"nginx {ref['p50']:.2f} ms",
                  "", "", None),
                 (f"{label}: thumbnail, 1 conn, {who}", f"{thumb[f'{who} c1']['ms_per_request']:.3f} ms/req",
                  f"nginx {thumb['nginx c1']['ms_per_request']:.3f}", "", "", None),
                 (f"{label}: thumbnail server CPU/req, {who}", f"{many['cpu_ms']:.3f} ms",
                  f"nginx {ref['cpu_ms']:.3f} ms", "", f"{many['cpu_ms'] / ref['cpu_ms']:.0f}x", None)]
    return rows


def print_list(label: str, figures: dict, first_goal: float, usage_goal: float | None) -> list[tuple]:
    me, first, following, usage = figures["me"], figures["first"], figures["following"], figures["usage"]
    print(f"\nmedia list, {label}: page_size={PAGE_SIZE}, {following['variants']} variants per media")
    print(f"  {'':28}{'p50':>9}{'p95':>9}{'n':>6}{'server CPU/req':>16}")
    for name, fig in (("/api/v1/me/ (floor)", me), ("first page", first), ("following pages", following),
                      ("/api/v1/usage/", usage)):
        print(f"  {name:28}{fig['p50']:7.2f}ms{fig['p95']:7.2f}ms{fig['n']:6}{fig['cpu_ms']:13.2f} ms")
    floor = f"me/ {me['p50']:.2f} / {me['p95']:.2f} ms"
    rows = [(f"{label}: first page p50 / p95", f"{first['p50']:.2f} / {first['p95']:.2f} ms", floor,
             f"p95 < {first_goal:g} ms", "", first["p95"] < first_goal),
            (f"{label}: following pages p50 / p95", f"{following['p50']:.2f} / {following['p95']:.2f} ms", floor,
             "p95 < 20 ms", "", following["p95"] < 20)]
    rows.append((f"{label}: list page server CPU (all pages)", f"{first['cpu_ms']:.2f} ms",
                 f"me/ {me['cpu_ms']:.2f} ms", "", "", None))
    rows.append((f"{label}: usage p50 / p95", f"{usage['p50']:.2f} / {usage['p95']:.2f} ms", floor,
                 f"< {usage_goal:g} ms" if usage_goal else "", "", usage["p95"] < usage_goal if usage_goal else None))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--million", type=int, default=1_000_000, help="media in the PostgreSQL database")
    parser.add_argument("--variants", type=int, default=10, choices=range(1, len(LEVELS) + 1), metavar="1..10",
                        help="variants per seeded media on PostgreSQL (10: every level a photo gets)")
    parser.add_argument("--thousand", type=int, default=1000, help="media in the SQLite database")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each 32-connection wrk run")
    parser.add_argument("--rounds", type=int, default=10, help="list rounds: first page + 20 following each")
    parser.add_argument("--requests", type=int, default=200, help="requests for /api/v1/usage/ and /me/")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--list-only", action="store_true", help="the media list, /me/ and /usage/ only (no thumbnails)")
    parser.add_argument("--skip-sqlite", action="store_true",
                        help="measure PostgreSQL only (the SQLite instance is still made: its photo's files are served)")
    parser.add_argument("--thumbnails-only", action="store_true", help="leave out the media list and usage")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the measured server (WEB_WORKERS=2, DELIVERY_INLINE=false, ...)")
    opts = parser.parse_args()
    if opts.skip_pg and opts.skip_sqlite:
        parser.error("--skip-pg and --skip-sqlite leave nothing to measure")
    if opts.list_only and opts.thumbnails_only:
        parser.error("--list-only and --thumbnails-only leave nothing to measure")
    SERVER_ENV.update(item.split("=", 1) for item in opts.env)
    wrk_bin()
    if not PHOTO.exists():
        raise SystemExit(f"{PHOTO} is missing (the shared corpus)")
    WORK.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="browse-", dir=WORK))
    try:
        sqlite_figures, grid = embedded(opts, workdir)
        pg_figures = None if opts.skip_pg else postgres(opts, workdir, grid)
        rows = []
        if sqlite_figures:
            if "thumb" in sqlite_figures:
                rows += print_thumbnails("SQLite", sqlite_figures["thumb"])
            if "list" in sqlite_figures:
                rows += print_list(f"SQLite {opts.thousand}", sqlite_figures["list"], 10, None)
        if pg_figures:
            if "thumb" in pg_figures:
                rows += print_thumbnails("PostgreSQL", pg_figures["thumb"])
            if "list" in pg_figures:
                rows += print_list(f"PostgreSQL {opts.million}", pg_figures["list"], 20, 20)
        if opts.json:
            opts.json.write_text(json.dumps({"sqlite": sqlite_figures, "postgresql": pg_figures}, indent=1))
        print(f"\n{'figure':46}{'ours':>20}  {'reference':24}{'goal':20}{'ratio':>7}  met")
        for name, ours, reference, goal, ratio, met in rows:
            verdict = "" if met is None else ("yes" if met else "NO")
            print(f"{name:46}{ours:>20}  {reference:24}{goal:20}{ratio:>7}  {verdict}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
