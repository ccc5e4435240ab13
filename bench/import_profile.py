"""Benchmark: where a worker's CPU goes per photo, by component.

Run from the project root:  .venv/bin/python bench/import_profile.py [--photos 40]

Makes the same 12 MP JPEG as bench/import.py (byte-distinct copies), ingests them into a
fresh embedded instance (SQLite, local disk) with jobs queued, then serves the queue in
this process the way one `manage.py worker` thread does (close_old_connections, claim,
execute), with CPU time (time.process_time, every thread of the process, so the render's
encode threads count) charged to the innermost component running. Jobs run one at a
time, so each CPU second belongs to the component on the stack. One-time costs (imports,
the first job) are shown apart from the per-photo figures.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

_spent: dict[str, float] = defaultdict(float)
_stack: list[list] = []  # [name, start of its current exclusive stretch]


def _enter(name: str) -> None:
    now = time.process_time()
    if _stack:
        _spent[_stack[-1][0]] += now - _stack[-1][1]
    _stack.append([name, now])


def _leave() -> None:
    now = time.process_time()
    name, start = _stack.pop()
    _spent[name] += now - start
    if _stack:
        _stack[-1][1] = now


def charge(owner, attr: str, name: str) -> None:
    """Wrap owner.attr so CPU spent inside it (and not in a wrapped callee) counts as `name`."""
    func = getattr(owner, attr)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        _enter(name)
        try:
            return func(*args, **kwargs)
        finally:
            _leave()

    setattr(owner, attr, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=40)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="chipmunk-bench-profile-"))
    os.environ.update({"CHIPMUNK_DATA_DIR": str(work / "data"), "JOBS_MODE": "queue", "LOG_LEVEL": "warning",
                       "DATABASE_URL": "", "STORAGE_BACKEND": "local", "DJANGO_SETTINGS_MODULE": "config.settings"})
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import close_old_connections

        call_command("migrate", "--noinput", verbosity=0)
        from gallery import events, jobs
        from gallery.models import Media, User
        from gallery.processing import exif, images, pipeline
        from gallery.services.media import media_ingest
        from gallery import storage as gallery_storage
        from variants import make_jpeg

        from importlib import import_module

        with_comment = import_module("import").with_comment

        owner = User.objects.create_user(username="bench", password="bench-password")
        source = work / "source.jpg"
        make_jpeg(source)
        jpeg = source.read_bytes()
        for i in range(args.photos + 1):  # the first job is a warm-up
            path = work / f"IMG_{i:04d}.jpg"
            path.write_bytes(with_comment(jpeg, f"bench photo {i}"))
            with open(path, "rb") as fh:
                media_ingest(owner=owner, stream=fh, size=path.stat().st_size, filename=path.name)

        charge(jobs, "_claim", "job claim")
        charge(jobs._Heartbeat, "__enter__", "job heartbeat thread")
        charge(jobs._Heartbeat, "__exit__", "job heartbeat thread")
        charge(jobs, "execute", "job bookkeeping (execute, state update)")
        charge(pipeline, "media_process", "media_process: row reads/updates, temp dir")
        charge(exif, "read_exif", "EXIF (read_exif)")
        charge(images, "render_variants", "pixel work (render_variants)")
        charge(pipeline, "_apply_location", "places / time zone")
        charge(pipeline, "_store_outputs", "variant rows (bulk insert, check)")
        charge(gallery_storage.media_storage().__class__, "save", "storage writes (10 files)")
        charge(events, "send", "events (channel layer)")

        def run_one() -> bool:
            _enter("worker loop (connections)")
            try:
                close_old_connections()
                row = jobs.claim(queues=["default"], worker="bench:0")
                if row is None:
                    return False
                jobs.execute(row)
                return True
            finally:
                _leave()

        first_cpu = time.process_time()
        run_one()
        first_cpu = time.process_time() - first_cpu
        _spent.clear()
        cpu, wall = time.process_time(), time.perf_counter()
        done = 0
        while run_one():
            done += 1
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        ready = Media.objects.filter(status=Media.Status.READY).count()
        print(f"{done} photos (+1 warm-up, {first_cpu * 1000:.0f} ms CPU), 4000x3000 JPEG, one worker thread in "
              f"this process; ready {ready}")
        print(f"CPU per photo: {cpu / done * 1000:.1f} ms (wall {wall / done * 1000:.1f} ms)")
        for name, seconds in sorted(_spent.items(), key=lambda kv: -kv[1]):
            print(f"  {seconds / done * 1000:7.1f} ms  {seconds / cpu * 100:5.1f} %  {name}")
        pixel = _spent["pixel work (render_variants)"]
        print(f"ratio CPU per photo / pixel work: {cpu / pixel:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
