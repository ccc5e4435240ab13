"""Scale-out: two web processes and two workers share PostgreSQL, Redis and S3, nothing else.

Two uvicorn processes serve config.asgi:application on loopback ports, each with a data
directory of its own (no shared disk), and two `manage.py worker` processes run the jobs;
S3 is a moto server in this process. One tus upload is created on web B and its PATCHes
alternate between A and B (S3 parts and staged tails cross processes); a websocket opened
on A, with the session of a login on A, hears media.created from B and media.processing /
media.ready from whichever worker processed it, over Redis.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings
from websockets.sync.client import connect as ws_connect

from gallery.models import Job, Media, Upload
from tests.conftest import free_port, required_redis_url
from tests.gallery.test_worker import ROOT, database_url
from tests.media_api.conftest import key_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(django_settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
                       reason="needs PostgreSQL (set DATABASE_URL): several processes share one database server"),
]

MiB = 2**20
TIMEOUT = 30


class Fleet:
    """The processes of one deployment; stopped together, their logs kept for a failure."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        self.processes: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], **extra: str) -> subprocess.Popen:
        data_dir = self.tmp / name
        data_dir.mkdir()
        log = open(self.tmp / f"{name}.log", "wb")
        process = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   env={**self.env, "CHIPMUNK_DATA_DIR": str(data_dir), **extra})
        self.processes.append((name, process))
        return process

    def web(self, name: str) -> str:
        port = free_port()
        self.start(name, ["-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port),
                          "--lifespan", "off", "--log-level", "warning"])
        return f"http://127.0.0.1:{port}"

    def wait_until_serving(self, base: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                requests.get(f"{base}/health/", timeout=5)
                return
            except requests.RequestException:  # not listening yet, or busy starting
                dead = [name for name, p in self.processes if p.poll() is not None]
                if dead or time.monotonic() > deadline:
                    raise AssertionError(f"{base} did not start (exited: {dead})\n{self.logs()}")
                time.sleep(0.2)

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{(self.tmp / f'{name}.log').read_text(errors='replace')[-3000:]}"
                         for name, _ in self.processes)

    def stop(self) -> dict[str, int | None]:
        for _, process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = {}
        for name, process in self.processes:
            try:
                codes[name] = process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = None
        return codes


def log_in(base: str, username: str) -> str:
    """Log in through the form of `base`, as a browser does; returns the session id."""
    session = requests.Session()
    session.get(f"{base}/login/", timeout=TIMEOUT).raise_for_status()
    response = session.post(f"{base}/login/", allow_redirects=False, timeout=TIMEOUT, data={
        "username": username, "password": f"{username}-password",
        "csrfmiddlewaretoken": session.cookies["csrftoken"]})
    assert response.status_code == 302, response.text[:500]
    return session.cookies["sessionid"]


def test_two_web_processes_and_two_workers_share_one_upload_and_its_events(alice, moto_server, tmp_path, corpus):
    redis_url = required_redis_url()
    bucket = moto_server.new_bucket()
    env = {**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": redis_url, "JOBS_MODE": "queue",
           "STORAGE_BACKEND": "s3", "S3_ENDPOINT_URL": moto_server.endpoint, "S3_BUCKET": bucket,
           "S3_REGION": "us-east-1", "S3_ACCESS_KEY_ID": moto_server.credentials["access_key"],
           "S3_SECRET_ACCESS_KEY": moto_server.credentials["secret_key"], "TUS_S3_PART_SIZE": "5MiB",
           # Every process signs and reads the same sessions.
           "SECRET_KEY": django_settings.SECRET_KEY, "LOG_LEVEL": "warning", "DEBUG": "false"}
    # A real photo, padded past two S3 parts (decoders stop at the end-of-image marker).
    data = (corpus / "jpg" / "Canon_40D.jpg").read_bytes()
    data += os.urandom(11 * MiB - len(data))
    key = key_for(alice)
    fleet = Fleet(tmp_path, env)
    try:
        web_a, web_b = fleet.web("web-a"), fleet.web("web-b")
        workers = [fleet.start(f"worker-{i}", ["manage.py", "worker", "--concurrency", "2", "--poll", "0.2"])
                   for i in (1, 2)]
        fleet.wait_until_serving(web_a)
        fleet.wait_until_serving(web_b)

        cookie = log_in(web_a, "alice")
        with ws_connect(f"ws://127.0.0.1:{web_a.rsplit(':', 1)[1]}/ws/events/", origin=web_a,
                        additional_headers={"Cookie": f"sessionid={cookie}"}, open_timeout=TIMEOUT) as socket:
            tus = {"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"}
            created = requests.post(f"{web_b}/api/v1/uploads/", timeout=TIMEOUT, headers={
                **tus, "Upload-Length": str(len(data)),
                "Upload-Metadata": f"filename {base64.b64encode(b'big.jpg').decode()}"})
            assert created.status_code == 201, created.text
            path = "/api/v1/uploads/" + created.headers["Location"].rstrip("/").rsplit("/", 1)[1]
            chunk = math.ceil(len(data) / 4)
            servers = [web_a, web_b, web_a, web_b]  # created on B, then A, B, A, B
            for index, offset in enumerate(range(0, len(data), chunk)):
                here, there = servers[index], servers[index - 1]
                answer = requests.patch(f"{here}{path}", data=data[offset:offset + chunk], timeout=TIMEOUT,
                                        headers={**tus, "Upload-Offset": str(offset),
                                                 "Content-Type": "application/offset+octet-stream"})
                assert answer.status_code == 204, f"PATCH {index} on {here}: {answer.status_code} {answer.text}"
                new_offset = min(offset + chunk, len(data))
                assert int(answer.headers["Upload-Offset"]) == new_offset
                # The other process sees the same state at once: the row is the whole state.
                head = requests.head(f"{there}{path}", headers=tus, timeout=TIMEOUT)
                assert int(head.headers["Upload-Offset"]) == new_offset
            media_id = answer.headers["Media-Id"]

            heard = []
            deadline = time.monotonic() + TIMEOUT
            while not any(e["event"] in ("media.ready", "media.failed") for e in heard):
                assert time.monotonic() < deadline, f"no media.ready on A; heard {heard}\n{fleet.logs()}"
                event = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
                if event.get("media_id") == media_id:
                    heard.append(event)
            assert [e["event"] for e in heard] == ["media.created", "media.processing", "media.ready"], heard

        # Either web process answers for the media; the bytes in S3 are the bytes sent.
        for base in (web_a, web_b):
            shown = requests.get(f"{base}/api/v1/media/{media_id}/", headers=tus, timeout=TIMEOUT)
            assert shown.status_code == 200 and shown.json()["status"] == "ready"
        media = Media.objects.get(pk=media_id)
        assert (media.status, media.size, media.sha256) == ("ready", len(data), hashlib.sha256(data).hexdigest())
        assert media.variants.count() == 10
        stored = moto_server.client().get_object(Bucket=bucket, Key=media.original_key)["Body"].read()
        assert hashlib.sha256(stored).hexdigest() == media.sha256
        upload = Upload.objects.get(owner=alice)
        assert (upload.state, upload.media_id, upload.tail_key) == (Upload.State.COMPLETED, media.pk, "")
        # The multipart upload was completed and the staged tails deleted: only the original is left.
        client = moto_server.client()
        assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
        listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{alice.pk}/library/")["Contents"]
        assert not [o["Key"] for o in listed if "/uploads/" in o["Key"]]
        assert media.original_key in {o["Key"] for o in listed}
        alice.refresh_from_db()
        assert (alice.used_bytes, alice.reserved_bytes) == (len(data), 0)
        job = Job.objects.get(name="process_media", payload__media_id=media_id)
        assert job.state == Job.State.DONE and job.attempts == 1
        assert int(job.worker.split(":")[1]) in {w.pid for w in workers}
    except BaseException:
        print(fleet.logs())  # pytest shows it with the failure
        raise
    finally:
        codes = fleet.stop()
    # uvicorn shuts down cleanly on SIGTERM, then re-raises it (so its exit status is -15).
    expected = {name: (0, -signal.SIGTERM) if name.startswith("web") else (0,) for name in codes}
    assert all(codes[name] in expected[name] for name in codes), f"{codes}\n{fleet.logs()}"
