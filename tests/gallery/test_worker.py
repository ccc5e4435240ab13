"""A real worker process: killed with SIGKILL mid-job, its job is finished by another."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from config.settings import local_storage_config
from gallery.models import Job, Media
from gallery.services.media import media_ingest
from tests.conftest import use_storage

ROOT = Path(__file__).resolve().parents[2]

HANGING_WORKER = """
import os, time, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from gallery import jobs
from gallery.processing import pipeline as processing
def hang(*args, **kwargs):
    time.sleep(3600)  # stands for a long job; the test kills this process meanwhile
processing._store_outputs = hang
jobs.Worker(concurrency=1, poll_seconds=0.1).run()
"""


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_job_leaves_no_media_stuck(alice, settings, corpus):
    settings.JOBS_MODE = "queue"
    use_storage(settings, local_storage_config(django_settings.MEDIA_ROOT))
    path = corpus / "jpg" / "Canon_40D.jpg"
    with open(path, "rb") as fh:
        media = media_ingest(owner=alice, stream=fh, size=path.stat().st_size, filename=path.name).media
    assert Job.objects.filter(name="process_media", state=Job.State.QUEUED).count() == 1

    env = {**os.environ, "DATABASE_URL": database_url(), "JOBS_MODE": "queue", "JOB_LEASE_SECONDS": "5",
           "CHIPMUNK_DATA_DIR": str(django_settings.DATA_DIR), "JOB_RETRY_BASE_SECONDS": "0"}
    doomed = subprocess.Popen([sys.executable, "-c", HANGING_WORKER], cwd=ROOT, env=env)
    try:
        wait_for(lambda: Media.objects.get(pk=media.pk).status == Media.Status.PROCESSING, 30, "processing to start")
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
        assert Media.objects.get(pk=media.pk).status == Media.Status.PROCESSING
    finally:
        if doomed.poll() is None:
            doomed.kill()

    rescuer = subprocess.Popen([sys.executable, "manage.py", "worker", "--concurrency", "1", "--poll", "0.2"],
                               cwd=ROOT, env=env)
    try:
        wait_for(lambda: Media.objects.get(pk=media.pk).status == Media.Status.READY, 60, "another worker to finish")
    finally:
        rescuer.send_signal(signal.SIGTERM)
        rescuer.wait(timeout=30)
    job = Job.objects.get(name="process_media")
    assert job.state == Job.State.DONE and job.attempts == 2
    assert Media.objects.get(pk=media.pk).variants.count() == 10
    assert rescuer.returncode == 0
