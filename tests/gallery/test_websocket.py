"""The events websocket through the real ASGI application (config.asgi), as a browser meets it:
the session cookie of a real login, the Origin check, the auth middleware, the router.

The last test runs a real worker process (`manage.py worker`): the events of its
processing reach this process's socket over Redis (channels_redis).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client

from config.asgi import application
from config.settings import local_storage_config
from gallery import events
from tests.conftest import required_redis_url, use_storage
from tests.gallery.test_events import make_media
from tests.gallery.test_worker import ROOT, database_url

pytestmark = pytest.mark.django_db(transaction=True)

HOST = "127.0.0.1:8000"
OWN_ORIGIN = f"http://{HOST}"


def _in_thread(func):
    """Run ORM work off the event loop, closing that thread's connection afterwards (on
    PostgreSQL it would otherwise outlive the test and keep the test database from dropping)."""

    def run(*args, **kwargs):
        from django.db import connection

        try:
            return func(*args, **kwargs)
        finally:
            connection.close()

    return sync_to_async(run)


@_in_thread
def session_cookie(username: str) -> str:
    """Log in through the login form; the session id the browser would keep."""
    client = Client()
    response = client.post("/login/", {"username": username, "password": f"{username}-password"})
    assert response.status_code == 302, f"login of {username} failed: {response.status_code}"
    return client.cookies["sessionid"].value


def socket_to(*, cookie: str | None = None, origin: str | None = OWN_ORIGIN) -> WebsocketCommunicator:
    headers = [(b"host", HOST.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if cookie is not None:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    return WebsocketCommunicator(application, "/ws/events/", headers=headers)


async def test_a_logged_in_page_hears_its_events_and_a_stranger_hears_nothing(layer, alice, charlie):
    mine = socket_to(cookie=await session_cookie("alice"))
    theirs = socket_to(cookie=await session_cookie("charlie"))
    assert (await mine.connect(timeout=10))[0]
    assert (await theirs.connect(timeout=10))[0]
    # Events name real media: the socket passes on only what the visibility rule lets through.
    photo, theirs_photo = await _in_thread(make_media)(alice), await _in_thread(make_media)(charlie)
    await _in_thread(events.send)(alice.pk, "media.ready", media_id=str(photo.pk))
    await _in_thread(events.send)(alice.pk, "media.deleted", media_id="m-2")
    assert await mine.receive_json_from(timeout=5) == {"event": "media.ready", "media_id": str(photo.pk)}
    assert await mine.receive_json_from(timeout=5) == {"event": "media.deleted", "media_id": "m-2"}
    # charlie's socket is open and works (it hears his own event), yet heard none of alice's.
    await _in_thread(events.send)(charlie.pk, "media.ready", media_id=str(theirs_photo.pk))
    assert await theirs.receive_json_from(timeout=5) == {"event": "media.ready", "media_id": str(theirs_photo.pk)}
    assert await theirs.receive_nothing(timeout=0.5)
    await mine.disconnect()
    await theirs.disconnect()


async def test_a_foreign_origin_is_refused_even_with_a_valid_session(alice):
    cookie = await session_cookie("alice")
    for origin in ("https://evil.example", "http://127.0.0.1.evil.example:8000", "null", None):
        refused = socket_to(cookie=cookie, origin=origin)
        connected, _ = await refused.connect(timeout=10)
        assert not connected, f"origin {origin!r} was let in"
    # The same cookie from the site's own origin is let in: the origin was the reason.
    welcome = socket_to(cookie=cookie)
    assert (await welcome.connect(timeout=10))[0]
    await welcome.disconnect()


async def test_anonymous_and_a_forged_or_logged_out_session_are_refused(alice):
    for cookie in (None, "not-a-session-key", uuid.uuid4().hex):
        connected, code = await socket_to(cookie=cookie).connect(timeout=10)
        assert (connected, code) == (False, 4401), f"cookie {cookie!r}"

    cookie = await session_cookie("alice")

    @_in_thread
    def log_out() -> None:
        client = Client()
        client.cookies["sessionid"] = cookie
        assert client.post("/logout/").status_code == 302

    await log_out()
    connected, code = await socket_to(cookie=cookie).connect(timeout=10)
    assert (connected, code) == (False, 4401)


async def test_events_a_worker_process_makes_reach_the_socket_over_redis(settings, alice, charlie, corpus):
    redis_url = required_redis_url()
    # This process and the worker share Redis, with the default prefix, as web and worker do.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": [redis_url]}}}
    channel_layers.backends.clear()
    settings.JOBS_MODE = "queue"  # processing is the worker's, not this process's
    use_storage(settings, local_storage_config(django_settings.MEDIA_ROOT))

    mine = socket_to(cookie=await session_cookie("alice"))
    theirs = socket_to(cookie=await session_cookie("charlie"))
    assert (await mine.connect(timeout=10))[0] and (await theirs.connect(timeout=10))[0]

    @_in_thread
    def ingest():
        from gallery.services.media import media_ingest

        path = corpus / "jpg" / "Canon_40D.jpg"
        with open(path, "rb") as fh:
            return media_ingest(owner=alice, stream=fh, size=path.stat().st_size, filename=path.name).media

    media = await ingest()
    assert await mine.receive_json_from(timeout=5) == {"event": "media.created", "media_id": str(media.pk),
                                                       "status": "pending"}
    env = {**os.environ, "DATABASE_URL": await _in_thread(database_url)(), "JOBS_MODE": "queue",
           "REDIS_URL": redis_url, "CHIPMUNK_DATA_DIR": str(django_settings.DATA_DIR),
           "SECRET_KEY": django_settings.SECRET_KEY}
    worker = subprocess.Popen([sys.executable, "manage.py", "worker", "--concurrency", "1", "--poll", "0.2"],
                              cwd=ROOT, env=env)
    try:
        heard = [await mine.receive_json_from(timeout=30)]
        while heard[-1]["event"] not in ("media.ready", "media.failed"):
            heard.append(await mine.receive_json_from(timeout=20))
    finally:
        worker.send_signal(signal.SIGTERM)
        # Off the event loop: a blocked loop lets the sockets' Redis reads time out.
        await asyncio.to_thread(worker.wait, 30)
    assert [e["event"] for e in heard] == ["media.processing", "media.ready"]
    assert {e["media_id"] for e in heard} == {str(media.pk)}
    assert worker.returncode == 0
    assert await theirs.receive_nothing(timeout=0.5)
    # The worker did the work: the media is ready with its variants, made in that process.
    refreshed = await _in_thread(lambda: (lambda m: (m.status, m.variants.count()))(
        type(media).objects.get(pk=media.pk)))()
    assert refreshed == ("ready", 10)
    await mine.disconnect()
    await theirs.disconnect()
