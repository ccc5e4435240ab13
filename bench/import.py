"""Benchmark: end-to-end photos per minute for a folder of 12 MP JPEGs.

Run from the project root:  .venv/bin/python bench/import.py [--photos 60] [--concurrency 2]

Makes one camera-like 12 MP JPEG (bench/variants.make_jpeg) and N byte-distinct copies of
it (a different JPEG comment each, so dedup does not skip them but the decode work is the
same), imports the folder with `manage.py import_folder` into a fresh embedded instance
(SQLite, local disk) whose `manage.py worker` is already running (as `make run` has it),
waits until every photo is ready, and prints photos per minute for the whole path against
the goal of 600/min. --sequential imports first and starts the worker after, to show the
two halves apart.

It also prints the worker's CPU per photo against the pixel work alone: bench/variants.py's
"ours" (render_variants on the same JPEG) timed here in CPU seconds, half of its runs before
the import and half after so that both sides see the same load on the machine. The goal is
a ratio of at most 1.3. The worker's start-up (Django, imports) and its idle wait before the
import are shown apart: a running server's worker has paid them long before a photo comes.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from variants import make_jpeg  # noqa: E402

GOAL_PER_MINUTE = 600
GOAL_CPU_RATIO = 1.3


def with_comment(jpeg: bytes, text: str) -> bytes:
    """The same JPEG with a COM segment after SOI: other bytes, same pixels."""
    payload = text.encode()
    segment = b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:2] + segment + jpeg[2:]


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, check=True)
    return result.stdout


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) a live process has used so far; None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pixel_work_cpu(path: Path, runs: int) -> list[float]:
    """CPU seconds of render_variants on `path`, once per run (bench/variants.py's "ours")."""
    from gallery.processing.images import render_variants

    render_variants(path)  # warm-up: imports, codec tables
    times = []
    for _ in range(runs):
        start = time.process_time()
        render_variants(path)
        times.append(time.process_time() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--processes", type=int, default=1, help="worker processes, each with --concurrency threads")
    parser.add_argument("--reference-runs", type=int, default=10,
                        help="render_variants runs for the pixel-work reference (half before, half after)")
    parser.add_argument("--sequential", action="store_true",
                        help="import everything first, then start the worker (the default runs the worker "
                             "already, as `make run` does, so processing overlaps the import)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="chipmunk-bench-import-"))
    try:
        folder = work / "photos"
        folder.mkdir()
        source = work / "source.jpg"
        make_jpeg(source)
        jpeg = source.read_bytes()
        for i in range(args.photos):
            (folder / f"IMG_{i:04d}.jpg").write_bytes(with_comment(jpeg, f"bench photo {i}"))
        reference = pixel_work_cpu(source, args.reference_runs // 2)
        print(f"{args.photos} photos of {len(jpeg) / 1e6:.1f} MB, 4000x3000, {args.processes} worker process(es) of {args.concurrency} thread(s)")

        data = work / "data"
        env = {**os.environ, "CHIPMUNK_DATA_DIR": str(data), "JOBS_MODE": "queue", "LOG_LEVEL": "warning",
               "DATABASE_URL": "", "STORAGE_BACKEND": "local"}
        manage(env, "migrate", "--noinput")
        manage(env, "createuser", "bench", "--password", "bench-password", "--quota", "1TB")

        def start_workers() -> list[subprocess.Popen]:
            return [subprocess.Popen([sys.executable, "manage.py", "worker", "--concurrency", str(args.concurrency),
                                      "--poll", "0.05"], cwd=ROOT, env=env) for _ in range(args.processes)]

        cpu_before = _children_cpu()
        workers = [] if args.sequential else start_workers()
        if workers:
            time.sleep(3)  # a running server's worker is already up and idle
        idle_cpu = [_process_cpu(w.pid) for w in workers]
        started = time.perf_counter()
        ingest_cpu = _children_cpu()
        manage(env, "import_folder", str(folder), "--user", "bench")
        # Running workers are not reaped yet, so this delta is the import command's alone.
        ingest_cpu = _children_cpu() - ingest_cpu
        ingested = time.perf_counter()
        if args.sequential:
            workers = start_workers()
        db = sqlite3.connect(data / "chipmunk.sqlite3", timeout=30)
        try:
            while True:
                left, failed = db.execute(
                    "select sum(status in ('pending','processing')), sum(status = 'failed') from gallery_media"
                ).fetchone()
                if not left:
                    break
                time.sleep(0.05)
            done = time.perf_counter()
        finally:
            last_cpu = [_process_cpu(w.pid) for w in workers]
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=60)
        # Children's CPU counts the import command too: it is not the worker's.
        worker_cpu = _children_cpu() - cpu_before - ingest_cpu
        ready = db.execute("select count(*) from gallery_media where status = 'ready'").fetchone()[0]
        variants = db.execute("select count(*) from gallery_variant").fetchone()[0]
        db.close()

        total = done - started
        per_minute = args.photos / total * 60
        print(f"ingest     {ingested - started:6.2f} s  ({args.photos / (ingested - started) * 60:7.0f} photos/min)")
        if args.sequential:
            print(f"processing {done - ingested:6.2f} s  ({args.photos / (done - ingested) * 60:7.0f} photos/min)")
        else:
            print(f"last ready {done - ingested:6.2f} s after the import ended (the worker ran meanwhile)")
        print(f"end to end {total:6.2f} s  ({per_minute:7.0f} photos/min)  ready {ready}, failed {failed or 0}, "
              f"variants {variants}")
        # CPU seconds barely depend on what else the machine is running; wall time does.
        print(f"worker CPU {worker_cpu / args.photos * 1000:6.0f} ms per photo (user + system, all worker processes)")
        print(f"ingest CPU {ingest_cpu / args.photos * 1000:6.0f} ms per photo (the import_folder command, not counted above)")
        print(f"ratio to the goal of {GOAL_PER_MINUTE}/min: {per_minute / GOAL_PER_MINUTE:.2f}")

        reference += pixel_work_cpu(source, args.reference_runs - args.reference_runs // 2)
        pixel = statistics.median(reference)
        print(f"pixel work {pixel * 1000:6.0f} ms per photo (render_variants alone, CPU, median of {len(reference)}: "
              f"{min(reference) * 1000:.0f}-{max(reference) * 1000:.0f} ms)")
        print(f"worker CPU / pixel work: {worker_cpu / args.photos / pixel:.2f} (goal <= {GOAL_CPU_RATIO})")
        if not args.sequential and None not in idle_cpu and None not in last_cpu:
            before = sum(idle_cpu)
            serving = sum(last_cpu) - before
            print(f"  of which start-up and idle wait before the import {before:.2f} s; from the import on "
                  f"{serving / args.photos * 1000:.0f} ms per photo, {serving / args.photos / pixel:.2f} x the pixel work")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
