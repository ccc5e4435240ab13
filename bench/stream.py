"""Stream-mode delivery against nginx on the same 1 GiB file, and S3 (moto) with the cache cold and warm.

    .venv/bin/python bench/stream.py [--mode stream|x-accel] [--ranges 200] [--s3-mib 256] [--skip-s3]

Starts, in a temporary CHIPMUNK_DATA_DIR under bench/.work/ (git-ignored): a SQLite
database with one user and media rows, uvicorn serving config.asgi with the options of
`manage.py run` (config.server: one worker, its protocol), Debian's nginx (sendfile on)
serving the same file, and a moto S3 server in a subprocess. With `--mode x-accel` ours is
DELIVERY_MODE=x-accel through deploy/nginx.conf (in the same nginx, beside the plain file
server): uvicorn authorizes, nginx sends the bytes. Whole-file fetches go through curl (so
the client is not the bottleneck); random 1 MiB ranges through one keep-alive http.client
connection per server. Prints throughput, median time to first byte and the ratios
ours/nginx (issue 9's goals: whole file >= 0.8; 1 MiB ranges >= 0.3 in stream mode, >= 0.8
in x-accel mode) and warm/cold. Every step has a deadline; a full run takes two to four
minutes.

In x-accel mode the ranges also go, in the same turns, through a floor: the same deploy
config in front of an app that decides nothing (bench/accel_floor.py, served as ours is),
answering every request at once with the headers ours answered. What separates the floor
from nginx is the round trip nginx -> uvicorn -> nginx itself; what separates ours from the
floor is our decision (the credential and the visibility rule, read afresh each request).
"""

from __future__ import annotations

import argparse
import http.client
import json
import mmap
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
BIG = WORK / "big-1GiB.bin"
GIB, MIB = 2**30, 2**20
PYTHON = sys.executable
WHOLE_RUNS = 3
DEADLINE = time.monotonic() + 420  # the whole run, whatever happens


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {timeout}s")


def left(cap: float) -> float:
    remaining = DEADLINE - time.monotonic()
    if remaining <= 5:
        raise SystemExit("bench: out of time")
    return min(cap, remaining)


def make_big_file() -> None:
    if BIG.exists() and BIG.stat().st_size == GIB:
        return
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"writing {BIG} (1 GiB of random bytes, once)...", flush=True)
    tmp = BIG.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        for _ in range(GIB // (64 * MIB)):
            out.write(os.urandom(64 * MIB))
    os.replace(tmp, BIG)


# --- Servers -----------------------------------------------------------------------------
@contextmanager
def process(args: list[str], *, env: dict | None = None, port: int, cwd: Path = ROOT):
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        wait_for_port(port)
    except SystemExit:
        proc.kill()
        print(proc.stderr.read().decode()[-3000:], file=sys.stderr)
        raise
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def serve_command(port: int, app: str = "config.asgi:application") -> list[str]:
    """The command serving `app` as `manage.py run` serves Chipmunk (config.server's options),
    quieter, on 127.0.0.1:`port` (run it from ROOT with DJANGO_SETTINGS_MODULE set); an app of
    bench/ is found there (only then: bench/search.py would hide the search package)."""
    where = "" if app.startswith("config.") else f"'app_dir': {str(ROOT / 'bench')!r}, "
    code = ("import uvicorn; from config.server import uvicorn_options; "
            f"uvicorn.run({app!r}, **{{**uvicorn_options(host='127.0.0.1', port={port}), "
            f"{where}'log_level': 'warning', 'access_log': False}})")
    return [str(PYTHON), "-c", code]


def uvicorn(env: dict, port: int, app: str = "config.asgi:application"):
    return process(serve_command(port, app), env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"}, port=port)


def deploy_server(port: int, upstream: int, root: Path, name: str = "chipmunk_web") -> str:
    """deploy/nginx.conf's server block on loopback, proxying to uvicorn, aliasing `root`;
    with another upstream `name` (a second copy in the same http block), without its map."""
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    for old, new in (("server web:8000;", f"server 127.0.0.1:{upstream};"), ("listen 80;", f"listen 127.0.0.1:{port};"),
                     ("alias /data/media/;", f"alias {root}/;")):
        if text.count(old) != 1:
            raise SystemExit(f"deploy/nginx.conf no longer has {old!r}: update bench/stream.py")
        text = text.replace(old, new)
    if name != "chipmunk_web":
        start, end = text.find("map $http_upgrade"), text.find("}", text.find("map $http_upgrade"))
        if start < 0 or end < 0:
            raise SystemExit("deploy/nginx.conf no longer has its map block: update bench/stream.py")
        text = (text[:start] + text[end + 1:]).replace("chipmunk_web", name)
    return text


def answered_headers(port: int, path: str, headers: dict[str, str]) -> list[tuple[str, str]]:
    """The headers uvicorn sends for ours' answer to a 1 MiB range (X-Accel-Redirect and all),
    less Date and Server, which uvicorn adds to any app's answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={**headers, "Range": f"bytes=0-{MIB - 1}"})
        response = conn.getresponse()
        response.read()
        found = [(k, v) for k, v in response.getheaders() if k.lower() not in ("date", "server")]
    finally:
        conn.close()
    if response.status != 200 or not any(k.lower() == "x-accel-redirect" for k, _ in found):
        raise SystemExit(f"ours answered {response.status} without X-Accel-Redirect: {found}")
    return found


def nginx(workdir: Path, root: Path, port: int, extra: str = ""):
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(binary, os.X_OK):
        raise SystemExit("nginx is missing: apt-get install -y nginx")
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(f"""
daemon off; worker_processes 1; {"user root;" if os.geteuid() == 0 else ""}
pid {workdir}/nginx.pid; error_log {workdir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    default_type application/octet-stream; access_log off; sendfile on; tcp_nopush on;
    client_body_temp_path {workdir}/b; proxy_temp_path {workdir}/p; fastcgi_temp_path {workdir}/f;
    uwsgi_temp_path {workdir}/u; scgi_temp_path {workdir}/s;
    server {{ listen 127.0.0.1:{port}; location /files/ {{ alias {root}/; }} }}
    {extra}
}}""")
    return process([binary, "-e", f"{workdir}/error.log", "-c", str(conf)], port=port)


# --- Clients -----------------------------------------------------------------------------
def curl_whole(url: str, headers: dict[str, str], expect: int) -> tuple[float, float]:
    """(seconds to the first byte, bytes per second) of one whole-file GET."""
    args = ["curl", "-sS", "-o", "/dev/null", "--max-time", str(int(left(120))), "-w",
            "%{http_code} %{time_starttransfer} %{time_total} %{size_download}"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout.split()
    status, ttfb, total, size = int(out[0]), float(out[1]), float(out[2]), int(out[3])
    if status != 200 or size != expect:
        raise SystemExit(f"{url}: status {status}, {size} bytes of {expect}")
    return ttfb, size / total


def random_ranges(port: int, path: str, headers: dict[str, str], offsets: list[int],
                  reference: mmap.mmap | None = None) -> tuple[float, float]:
    """(median seconds to the first body byte, bytes per second) over 1 MiB ranges at offsets."""
    return interleaved_ranges([(port, path, headers, reference)], [offsets])[0]


def interleaved_ranges(servers: list[tuple[int, str, dict[str, str], mmap.mmap | None]], offsets: list[list[int]],
                       blocks: int = 1) -> list[tuple[float, float]]:
    """random_ranges of each server at its own offsets (offsets[i] for servers[i], all of one
    length), taking turns by blocks of them (so a shared machine's load falls on all of them
    alike). Throughput counts only the time of the requests: checking the bytes against
    `reference` comes after. Own offsets, because a range one server has just sent, and the
    check has just read, is still in the CPU's cache: the next server sending the same range
    sent it ~2x faster (nginx here: 2.4 GB/s going first, 4.4-4.8 GB/s after another server)."""
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for port, *_ in servers]
    ttfbs, spent = [[] for _ in servers], [0.0] * len(servers)
    count = len(offsets[0])
    size = -(-count // blocks)
    for start in range(0, count, size):
        for index, (conn, (_, path, headers, reference)) in enumerate(zip(conns, servers)):
            for offset in offsets[index][start:start + size]:
                left(60)
                t0 = time.perf_counter()
                conn.request("GET", path, headers={**headers, "Range": f"bytes={offset}-{offset + MIB - 1}"})
                response = conn.getresponse()
                first = response.read(1)
                t1 = time.perf_counter()
                body = first + response.read()
                spent[index] += time.perf_counter() - t0
                ttfbs[index].append(t1 - t0)
                if response.status != 206 or len(body) != MIB:
                    raise SystemExit(f"{path}: status {response.status}, {len(body)} bytes")
                if reference is not None and body != reference[offset:offset + MIB]:
                    raise SystemExit(f"{path}: wrong bytes at {offset}")
    for conn in conns:
        conn.close()
    return [(statistics.median(t), count * MIB / seconds) for t, seconds in zip(ttfbs, spent)]


def big_file_map() -> mmap.mmap:
    """The big file as a read-only memory map, to check the bytes each range answer carries."""
    with open(BIG, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


# --- Django set-up -----------------------------------------------------------------------
SETUP = """
import json
from gallery.models import Media, User
from gallery.services.accounts import apikey_create
user = User.objects.filter(username="bench").first() or User.objects.create_user(username="bench", password=None)
out = {}
for key, size in %s:
    media, _ = Media.objects.get_or_create(original_key=key, owner=user, defaults=dict(
        original_filename=key.rsplit("/", 1)[-1], content_type="application/octet-stream", size=size,
        sha256="", status=Media.Status.READY))
    out[key] = media.token
_, raw = apikey_create(user=user, name="bench", scopes=["media.read"])
out["apikey"] = raw
print("JSON" + json.dumps(out))
"""


def manage(env: dict, *args: str) -> str:
    result = subprocess.run([PYTHON, "manage.py", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=left(120))
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def setup_rows(env: dict, objects: list[tuple[str, int]]) -> dict:
    out = manage(env, "shell", "-c", SETUP % repr(objects))
    return json.loads(out.split("JSON", 1)[1])


def mbps(rate: float) -> str:
    return f"{rate / 1e6:8.0f} MB/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranges", type=int, default=200, help="random 1 MiB ranges per server")
    parser.add_argument("--s3-mib", type=int, default=256, help="size of the S3 object in MiB")
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument("--mode", choices=("stream", "x-accel"), default="stream",
                        help="who sends our bytes: uvicorn, or nginx through deploy/nginx.conf (x-accel)")
    opts = parser.parse_args()
    accel = opts.mode == "x-accel"
    if not shutil.which("curl"):
        raise SystemExit("curl is needed (apt-get install -y curl)")
    make_big_file()
    rng = random.Random(42)
    # nginx, ours and (x-accel) the floor: each its own random ranges (interleaved_ranges).
    offsets = [[rng.randrange(0, GIB - MIB) for _ in range(opts.ranges)] for _ in range(3)]
    reference = big_file_map()

    data_dir = Path(tempfile.mkdtemp(prefix="stream-", dir=WORK))
    try:
        media_root = data_dir / "media"
        local_key = "bench/big-1GiB.bin"
        (media_root / "bench").mkdir(parents=True)
        os.link(BIG, media_root / local_key)  # same bytes, no copy
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "S3_", "BLOB_CACHE"))}
        env.update(CHIPMUNK_DATA_DIR=str(data_dir), DELIVERY_MODE=opts.mode, STORAGE_BACKEND="local",
                   LOG_LEVEL="warning", DEBUG="false", RUN_WORKER="false", JOBS_MODE="queue")
        manage(env, "migrate", "--noinput")
        rows = setup_rows(env, [(local_key, GIB)])
        auth = {"Authorization": f"Bearer {rows['apikey']}"}
        ours_path, nginx_path = f"/m/{rows[local_key]}/0/", f"/files/{local_key}"

        results: dict[str, tuple[float, float]] = {}
        app_port, nginx_port = free_port(), free_port()
        # x-accel: ours is the deploy config's server, which asks uvicorn and sends the file.
        ours_port = free_port() if accel else app_port
        floor_app_port, floor_port = (free_port(), free_port()) if accel else (0, 0)
        extra = deploy_server(ours_port, app_port, media_root) if accel else ""
        if accel:
            extra += deploy_server(floor_port, floor_app_port, media_root, name="floor_web")
        print(f"local file, 1 GiB, {opts.mode} mode: {WHOLE_RUNS} whole fetches and {opts.ranges} random 1 MiB "
              "ranges each", flush=True)
        with ExitStack() as servers:
            servers.enter_context(uvicorn(env, app_port))
            if accel:
                floor_env = {**env, "ACCEL_FLOOR_HEADERS": json.dumps(answered_headers(app_port, ours_path, auth))}
                servers.enter_context(uvicorn(floor_env, floor_app_port, app="accel_floor:app"))
            servers.enter_context(nginx(data_dir / "nginx", media_root, nginx_port, extra))
            if accel:
                wait_for_port(ours_port)
                wait_for_port(floor_port)
            whole = {"ours": [], "nginx": []}
            for _ in range(WHOLE_RUNS):  # interleaved, so both see the same page cache
                whole["nginx"].append(curl_whole(f"http://127.0.0.1:{nginx_port}{nginx_path}", {}, GIB))
                whole["ours"].append(curl_whole(f"http://127.0.0.1:{ours_port}{ours_path}", auth, GIB))
            for who, runs in whole.items():
                results[f"{who} whole"] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
            # Taking turns request by request, so all see the same load and the same machine state.
            turns = [(nginx_port, nginx_path, {}, reference), (ours_port, ours_path, auth, reference)]
            if accel:
                turns.append((floor_port, ours_path, auth, reference))
            measured = interleaved_ranges(turns, offsets[:len(turns)], blocks=opts.ranges)
            results["nginx ranges"], results["ours ranges"] = measured[:2]
            if accel:
                results["floor ranges"] = measured[2]

        print(f"\n{'':24}{'throughput':>14}{'median TTFB':>14}")
        for name in ("nginx whole", "ours whole", "nginx ranges", "ours ranges", "floor ranges"):
            if name in results:
                ttfb, rate = results[name]
                print(f"{name:24}{mbps(rate):>14}{ttfb * 1000:>11.2f} ms")
        print(f"ratio ours/nginx, whole file:   {results['ours whole'][1] / results['nginx whole'][1]:.2f}"
              " (goal >= 0.8)")
        print(f"ratio ours/nginx, 1 MiB ranges: {results['ours ranges'][1] / results['nginx ranges'][1]:.2f}"
              f" (goal >= {0.8 if accel else 0.3})")
        if accel:
            print(f"ratio floor/nginx, 1 MiB ranges: {results['floor ranges'][1] / results['nginx ranges'][1]:.2f}"
                  " (the round trip alone: an app that decides nothing)")
            print(f"ratio ours/floor, 1 MiB ranges: {results['ours ranges'][1] / results['floor ranges'][1]:.2f}"
                  " (what our decision costs)")
        sys.stdout.flush()

        if not opts.skip_s3 and not accel:
            bench_s3(env, data_dir, opts, reference)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def bench_s3(env: dict, data_dir: Path, opts: argparse.Namespace, reference: mmap.mmap) -> None:
    import boto3
    from boto3.s3.transfer import TransferConfig

    size = opts.s3_mib * MIB
    key = f"bench/s3-{opts.s3_mib}MiB.bin"
    moto_port = free_port()
    rng = random.Random(7)
    offsets = [rng.randrange(0, size - MIB) for _ in range(min(opts.ranges, 100))]
    print(f"\nS3 (moto server), {opts.s3_mib} MiB object: whole fetch and {len(offsets)} random 1 MiB ranges",
          flush=True)
    with process([PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)], port=moto_port):
        endpoint = f"http://127.0.0.1:{moto_port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
        s3.create_bucket(Bucket="bench")
        # The object is the first `size` bytes of the big file, so the same map checks answers.
        with open(BIG, "rb") as f, tempfile.NamedTemporaryFile(dir=WORK) as part:
            for _ in range(size // (8 * MIB)):
                part.write(f.read(8 * MIB))
            part.flush()
            s3.upload_file(part.name, "bench", key, Config=TransferConfig(multipart_chunksize=64 * MIB))
        s3_env = {**env, "STORAGE_BACKEND": "s3", "S3_ENDPOINT_URL": endpoint, "S3_BUCKET": "bench",
                  "S3_ACCESS_KEY_ID": "bench", "S3_SECRET_ACCESS_KEY": "bench", "BLOB_CACHE_BYTES": "1GiB",
                  "BLOB_CACHE_USER_SHARE": "100%"}
        rows = setup_rows(s3_env, [(key, size)])
        auth = {"Authorization": f"Bearer {rows['apikey']}"}
        path = f"/m/{rows[key]}/0/"
        port = free_port()
        figures: dict[str, tuple[float, float]] = {}
        for label, cache in (("no cache", "0"), ("cache", "1GiB")):
            shutil.rmtree(data_dir / "cache", ignore_errors=True)
            run_env = {**s3_env, "BLOB_CACHE_BYTES": cache}
            with uvicorn(run_env, port):
                figures[f"whole, {label}, cold"] = curl_whole(f"http://127.0.0.1:{port}{path}", auth, size)
                if cache != "0":
                    figures[f"whole, {label}, warm"] = curl_whole(f"http://127.0.0.1:{port}{path}", auth, size)
            shutil.rmtree(data_dir / "cache", ignore_errors=True)
            with uvicorn(run_env, port):
                figures[f"ranges, {label}, cold"] = random_ranges(port, path, auth, offsets, reference)
                if cache != "0":
                    figures[f"ranges, {label}, warm"] = random_ranges(port, path, auth, offsets, reference)
        print(f"\n{'':28}{'throughput':>14}{'median TTFB':>14}")
        for name, (ttfb, rate) in figures.items():
            print(f"{name:28}{mbps(rate):>14}{ttfb * 1000:>11.2f} ms")
        for kind in ("whole", "ranges"):
            cold, warm = figures[f"{kind}, cache, cold"], figures[f"{kind}, cache, warm"]
            print(f"{kind}: warm/cold throughput {warm[1] / cold[1]:.1f}x, TTFB {cold[0] / warm[0]:.1f}x faster")


if __name__ == "__main__":
    main()
