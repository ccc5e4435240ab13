"""Two worker processes (two threads each) claiming from one queue never run a job twice.

The workers are gallery.jobs.Worker in processes of their own, on the test database, with
one extra handler that notes each run in a file (one O_APPEND write per run). On
PostgreSQL the claim is SELECT ... FOR UPDATE SKIP LOCKED; SQLite serialises writers, which
would hide a race, so this runs on PostgreSQL only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from django.conf import settings as django_settings
from django.db import transaction

from gallery import jobs
from gallery.models import Job
from tests.gallery.test_worker import ROOT, database_url, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(django_settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
                       reason="needs PostgreSQL (set DATABASE_URL): SQLite serialises every claim, so nothing races"),
]

JOBS = 200

RECORDING_WORKER = """
import os, sys, time, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from gallery import jobs
log = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

@jobs.job("claim_race_record")
def record(*, n):
    os.write(log, f"{n} {os.getpid()}\\n".encode())
    time.sleep(0.002)  # a job takes a moment, so the claimers interleave

os.write(log, f"ready {os.getpid()}\\n".encode())
jobs.Worker(concurrency=2, poll_seconds=0.05).run()
"""


def test_two_worker_processes_run_every_job_exactly_once(settings, tmp_path):
    settings.JOBS_MODE = "queue"
    runs = tmp_path / "runs.log"
    env = {**os.environ, "DATABASE_URL": database_url(), "JOBS_MODE": "queue",
           "CHIPMUNK_DATA_DIR": str(django_settings.DATA_DIR), "LOG_LEVEL": "warning"}
    workers = [subprocess.Popen([sys.executable, "-c", RECORDING_WORKER, str(runs)], cwd=ROOT, env=env)
               for _ in range(2)]
    try:
        def lines() -> list[str]:
            return runs.read_text().splitlines() if runs.exists() else []

        wait_for(lambda: sum(line.startswith("ready ") for line in lines()) == 2, 20, "both workers to start")
        time.sleep(0.3)  # both are polling now
        with transaction.atomic():  # every job becomes visible at the same moment
            for n in range(JOBS):
                jobs.enqueue("claim_race_record", {"n": n})
        wait_for(lambda: not Job.objects.exclude(state=Job.State.DONE).exists(), 30, "every job to be done")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
    assert [w.returncode for w in workers] == [0, 0]

    done = [line.split() for line in lines() if not line.startswith("ready ")]
    counts = Counter(int(n) for n, _ in done)
    assert sorted(counts) == list(range(JOBS)), "some job never ran"
    assert [n for n, c in counts.items() if c > 1] == [], "some job ran twice"
    by_process = Counter(pid for _, pid in done)
    assert set(by_process) == {str(w.pid) for w in workers}, f"one process did everything: {by_process}"
    rows = Job.objects.filter(name="claim_race_record")
    assert rows.count() == JOBS
    assert set(rows.values_list("state", "attempts")) == {(Job.State.DONE, 1)}
    # Four claimers (two threads in each process) took part.
    assert len(set(rows.values_list("worker", flat=True))) == 4
