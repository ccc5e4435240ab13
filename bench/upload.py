"""Benchmark: a tus upload over loopback through Chipmunk and through the tus Node reference server.

Run from the project root:  .venv/bin/python bench/upload.py [--gib 1] [--rss-gib 1,4] [--chunk-mib 0]

- Chipmunk: uvicorn running config.asgi with the options of `manage.py run` (config.server,
  whose HTTP protocol class is ours), in a subprocess with a throw-away CHIPMUNK_DATA_DIR
  (SQLite, local disk, jobs queued but no worker), a user and an API key made with the
  manage.py commands.
- Reference: @tus/server with @tus/file-store (npm, installed once into bench/.work/node,
  which git ignores), Node 20+.
- The same minimal client (http.client, 1 MiB writes) sends the same file to both, one
  PATCH per --chunk-mib (0: the whole file in one PATCH). Timing covers creation to the
  final response, which on our side includes the SHA-256 and recording the media.
- Throughput: --runs (at least 3) interleaved pairs on the same servers, node first in even
  pairs and ours first in odd ones, printed as median [min-max] MB/s of each server and of
  the per-pair ratio (ours / node of the same pair, also by order), never the best run
  alone. The load average is printed with it: a busy machine slows both, but not alike.
- Peak RSS of our uvicorn process (VmHWM in /proc/<pid>/status) is measured on a fresh
  server for each size in --rss-gib: it should stay flat, well under 200 MB.

Files live under bench/.work/ and are deleted at the end (a 4 GiB run needs ~8 GiB free).
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from stream import serve_command  # noqa: E402 (bench/stream.py: how the benches serve Chipmunk)
WORK = ROOT / "bench" / ".work"
NODE_DIR = WORK / "node"
NODE_PACKAGES = ["@tus/server@2.4.5", "@tus/file-store@2.1.1"]
PYTHON = ROOT / ".venv" / "bin" / "python"
GiB = 2**30
MiB = 2**20

NODE_SERVER = """
import http from 'node:http';
import {Server} from '@tus/server';
import {FileStore} from '@tus/file-store';
const [directory, port] = process.argv.slice(2);
const tus = new Server({path: '/files', datastore: new FileStore({directory})});
http.createServer((req, res) => tus.handle(req, res)).listen(Number(port), '127.0.0.1', () => console.log('ready'));
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def make_file(path: Path, size: int) -> None:
    """Random-looking bytes (a 64 MiB random block, each copy tagged with its index)."""
    block = bytearray(os.urandom(64 * MiB))
    with open(path, "wb") as fh:
        written, index = 0, 0
        while written < size:
            block[:8] = index.to_bytes(8, "big")
            piece = block[: min(len(block), size - written)]
            fh.write(piece)
            written += len(piece)
            index += 1


def spread(values: list[float], fmt: str) -> str:
    """`median [min-max]` of a few measurements."""
    return (f"{format(statistics.median(values), fmt)} "
            f"[{format(min(values), fmt)}-{format(max(values), fmt)}]")


# --- The client ----------------------------------------------------------------------
def tus_upload(create_url: str, path: Path, headers: dict[str, str], chunk: int) -> float:
    """Create and send `path`; returns the seconds from creation to the last response."""
    size = path.stat().st_size
    parts = urlsplit(create_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600, blocksize=MiB)
    started = time.perf_counter()
    conn.request("POST", parts.path, headers={**headers, "Tus-Resumable": "1.0.0", "Upload-Length": str(size),
                                              "Upload-Metadata": "filename YmVuY2guYmlu"})
    response = conn.getresponse()
    response.read()
    if response.status != 201:
        raise RuntimeError(f"creation answered {response.status}")
    location = urlsplit(response.getheader("Location")).path
    offset = 0
    chunk = chunk or size
    with open(path, "rb") as fh:
        while offset < size:
            length = min(chunk, size - offset)
            fh.seek(offset)
            body = _Slice(fh, length)
            conn.request("PATCH", location, body=body, headers={
                **headers, "Tus-Resumable": "1.0.0", "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream", "Content-Length": str(length)})
            response = conn.getresponse()
            response.read()
            if response.status != 204:
                raise RuntimeError(f"PATCH at {offset} answered {response.status}")
            offset = int(response.getheader("Upload-Offset"))
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


class _Slice:
    """`length` bytes of a file from its current position, read 1 MiB at a time."""

    def __init__(self, fh, length: int) -> None:
        self.fh, self.left = fh, length

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.fh.read(size)
        self.left -= len(data)
        return data


# --- The servers ---------------------------------------------------------------------
class Chipmunk:
    def __init__(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="chipmunk-bench-", dir=WORK))
        self.env = {**os.environ, "CHIPMUNK_DATA_DIR": str(self.data_dir), "JOBS_MODE": "queue",
                    "LOG_LEVEL": "warning", "DEBUG": "false", "DATABASE_URL": "", "STORAGE_BACKEND": "local",
                    "TUS_MAX_SIZE": "100GB"}
        manage = [str(PYTHON), "manage.py"]
        subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=self.env, check=True)
        subprocess.run([*manage, "createuser", "bench", "--password", "bench-password", "--quota", "100GB"],
                       cwd=ROOT, env=self.env, check=True, capture_output=True)
        created = subprocess.run([*manage, "apikey", "create", "bench", "--scopes", "media.read,media.read_write"],
                                 cwd=ROOT, env=self.env, check=True, capture_output=True, text=True)
        self.key = created.stdout.strip().splitlines()[-1]
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.port = free_port()
        # As `manage.py run` serves (without its job worker), quieter.
        self.process = subprocess.Popen(serve_command(self.port), cwd=ROOT,
                                        env={**self.env, "DJANGO_SETTINGS_MODULE": "config.settings"})
        wait_for_port(self.port, self.process)

    def upload(self, path: Path, chunk: int) -> float:
        return tus_upload(f"http://127.0.0.1:{self.port}/api/v1/uploads/", path,
                          {"Authorization": f"Bearer {self.key}"}, chunk)

    def reset(self) -> None:
        """Forget the media of the last run, so the next run of the same bytes is no dedup."""
        subprocess.run([str(PYTHON), "manage.py", "shell", "-c",
                        "from gallery.models import Media, Upload, User; Media.objects.all().delete(); "
                        "Upload.objects.all().delete(); User.objects.update(used_bytes=0, reserved_bytes=0)"],
                       cwd=ROOT, env=self.env, check=True, capture_output=True)
        shutil.rmtree(self.data_dir / "media", ignore_errors=True)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
        self.reset()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


class NodeReference:
    def __init__(self) -> None:
        if not (NODE_DIR / "node_modules" / "@tus" / "server").is_dir():
            NODE_DIR.mkdir(parents=True, exist_ok=True)
            print(f"installing {' '.join(NODE_PACKAGES)} into {NODE_DIR} ...", flush=True)
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", *NODE_PACKAGES],
                           cwd=NODE_DIR, check=True)
        (NODE_DIR / "server.mjs").write_text(NODE_SERVER)
        self.files = Path(tempfile.mkdtemp(prefix="tus-node-", dir=WORK))
        self.port = free_port()
        self.process = subprocess.Popen(["node", "server.mjs", str(self.files), str(self.port)], cwd=NODE_DIR,
                                        stdout=subprocess.DEVNULL)
        wait_for_port(self.port, self.process)

    def upload(self, path: Path, chunk: int) -> float:
        return tus_upload(f"http://127.0.0.1:{self.port}/files", path, {}, chunk)

    def close(self) -> None:
        stop(self.process)
        shutil.rmtree(self.files, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gib", type=float, default=1.0, help="size of the throughput comparison")
    parser.add_argument("--rss-gib", default="1,4", help="sizes whose peak RSS is measured (fresh server each)")
    parser.add_argument("--chunk-mib", type=int, default=0, help="PATCH size; 0 sends the file in one PATCH")
    parser.add_argument("--runs", type=int, default=3, help="interleaved throughput runs per server (3 or more)")
    args = parser.parse_args()
    if args.runs < 3:
        parser.error("--runs must be at least 3: a median and a range need them")
    WORK.mkdir(parents=True, exist_ok=True)
    chunk = args.chunk_mib * MiB
    sizes = sorted({int(float(g) * GiB) for g in args.rss_gib.split(",") if g} | {int(args.gib * GiB)})
    files = {size: WORK / f"upload-{size}.bin" for size in sizes}
    ours = node = None
    try:
        for size, path in files.items():
            make_file(path, size)
        compared = files[int(args.gib * GiB)]
        ours, node = Chipmunk(), NodeReference()
        ours_times, node_times = [], []
        load_before = os.getloadavg()
        ours.start()
        # Interleaved so cache and thermal drift hit both alike, and in alternating order: on
        # this kind of machine the upload that comes right after the other server's one can
        # be markedly slower (seen for ours after Node's), which would bias a fixed order.
        for run in range(args.runs):
            if run % 2 == 0:
                node_times.append(node.upload(compared, chunk))
            ours_times.append(ours.upload(compared, chunk))
            ours.reset()
            if run % 2 == 1:
                node_times.append(node.upload(compared, chunk))
        ours.stop()
        load_after = os.getloadavg()
        node_rss = peak_rss_mb(node.process.pid)
        node.close()
        node = None
        size_mb = compared.stat().st_size / 1e6
        ours_rates = [size_mb / t for t in ours_times]
        node_rates = [size_mb / t for t in node_times]
        ratios = [o / n for o, n in zip(ours_rates, node_rates)]
        print(f"\nupload of {compared.stat().st_size / GiB:g} GiB over loopback, "
              f"{'one PATCH' if not chunk else f'{args.chunk_mib} MiB PATCHes'}, {args.runs} interleaved runs, "
              f"median [min-max]:")
        print(f"  chipmunk (uvicorn, config.asgi)   {spread(ours_rates, '.0f')} MB/s")
        print(f"  @tus/server + @tus/file-store     {spread(node_rates, '.0f')} MB/s   (peak RSS {node_rss:.0f} MB)")
        print(f"  ratio chipmunk / node (per pair)  {spread(ratios, '.2f')}   (goal >= 0.8)")
        print("  runs (MB/s, node / ours; * ours first)   "
              + "  ".join(f"{n:.0f}/{o:.0f}{'*' if run % 2 else ''}"
                          for run, (n, o) in enumerate(zip(node_rates, ours_rates))))
        for label, first in (("node first", 0), ("ours first", 1)):
            if ratios[first::2]:
                print(f"  ratio, pairs with {label}:        {spread(ratios[first::2], '.2f')}")
        print("  load average (1, 5, 15 min)      before {:.2f} {:.2f} {:.2f}, after {:.2f} {:.2f} {:.2f}".format(
            *load_before, *load_after))
        print("\npeak RSS of our uvicorn process (fresh server per size; goal: flat, < 200 MB):")
        for size in sizes:
            if size not in {int(float(g) * GiB) for g in args.rss_gib.split(",") if g}:  # bytes, as `sizes`
                continue
            ours.start()
            idle = peak_rss_mb(ours.process.pid)
            seconds = ours.upload(files[size], chunk)
            peak = peak_rss_mb(ours.process.pid)
            ours.stop()
            print(f"  {size / GiB:g} GiB: {peak:6.1f} MB   (after start-up {idle:.1f} MB; "
                  f"{size / 1e6 / seconds:.0f} MB/s)")
        return 0
    finally:
        if ours is not None:
            ours.close()
        if node is not None:
            node.close()
        for path in files.values():
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
