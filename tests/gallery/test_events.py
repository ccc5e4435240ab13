"""The live-events websocket, on the in-memory layer and on Redis (the `layer` fixture)."""

from __future__ import annotations

import os
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from gallery import events
from gallery.consumers import EventsConsumer


def make_media(owner, **fields):
    from django.db import connection

    from gallery.models import Media

    try:
        return Media.objects.create(owner=owner, original_filename="p.jpg", sha256=uuid.uuid4().hex, **fields)
    finally:
        connection.close()  # this thread's connection, which the test database must not outlive


def communicator(user) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(EventsConsumer.as_asgi(), "/ws/events/")
    comm.scope["user"] = user
    return comm


@pytest.mark.django_db(transaction=True)
async def test_owner_hears_own_events_and_stranger_hears_nothing(layer, alice, charlie):
    photo = await sync_to_async(make_media)(alice)
    mine, theirs = communicator(alice), communicator(charlie)
    assert (await mine.connect())[0] and (await theirs.connect())[0]
    await sync_to_async(events.send)(alice.pk, "media.ready", media_id=str(photo.pk))
    assert await mine.receive_json_from(timeout=5) == {"event": "media.ready", "media_id": str(photo.pk)}
    assert await theirs.receive_nothing(timeout=0.3)
    await mine.disconnect()
    await theirs.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_events_follow_the_visibility_rule(layer, alice):
    """Events about media the owner could not open here (vault, trash) are not sent; a
    deletion still is; a made-up id is dropped."""
    from django.utils import timezone

    vaulted = await sync_to_async(make_media)(alice, in_vault=True)
    trashed = await sync_to_async(make_media)(alice, trashed_at=timezone.now())
    shown = await sync_to_async(make_media)(alice)
    comm = communicator(alice)
    assert (await comm.connect())[0]
    for media in (vaulted, trashed):
        await sync_to_async(events.send)(alice.pk, "media.ready", media_id=str(media.pk))
    await sync_to_async(events.send)(alice.pk, "media.ready", media_id="not-a-uuid")
    await sync_to_async(events.send)(alice.pk, "media.deleted", media_id=str(trashed.pk))
    await sync_to_async(events.send)(alice.pk, "media.ready", media_id=str(shown.pk))
    assert await comm.receive_json_from(timeout=5) == {"event": "media.deleted", "media_id": str(trashed.pk)}
    assert await comm.receive_json_from(timeout=5) == {"event": "media.ready", "media_id": str(shown.pk)}
    assert await comm.receive_nothing(timeout=0.3)
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_anonymous_socket_is_refused(layer):
    comm = communicator(AnonymousUser())
    connected, code = await comm.connect()
    assert not connected and code == 4401


@pytest.mark.django_db(transaction=True)
async def test_upload_and_processing_events_arrive(layer, alice, corpus):
    from gallery.services.media import media_ingest

    comm = communicator(alice)
    assert (await comm.connect())[0]

    def ingest():
        from django.db import connection

        try:
            with open(corpus / "jpg" / "Canon_40D.jpg", "rb") as fh:
                return media_ingest(owner=alice, stream=fh, size=os.fstat(fh.fileno()).st_size,
                                    filename="Canon_40D.jpg").media
        finally:
            # This runs in a worker thread of sync_to_async: its connection would outlive the
            # test and keep PostgreSQL from dropping the test database.
            connection.close()

    media = await sync_to_async(ingest)()
    seen = []
    while not seen or seen[-1]["event"] not in ("media.ready", "media.failed"):
        seen.append(await comm.receive_json_from(timeout=20))
    assert [e["event"] for e in seen] == ["media.created", "media.processing", "media.ready"]
    assert all(e["media_id"] == str(media.pk) for e in seen)
    await comm.disconnect()


# --- The handshake's Origin, through config.asgi.application with a real session ---------
def session_cookie(user) -> bytes:
    from django.db import connection
    from django.test import Client

    try:
        browser = Client()
        browser.force_login(user)
        return f"sessionid={browser.cookies['sessionid'].value}".encode()
    finally:
        connection.close()


async def handshake(user, origin: str | None, *, host: str = "127.0.0.1", scheme: str | None = None,
                    client: tuple[str, int] | None = None, extra: list | None = None) -> tuple[bool, object]:
    from config.asgi import application

    headers = [(b"host", host.encode()), (b"cookie", await sync_to_async(session_cookie)(user))]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    comm = WebsocketCommunicator(application, "/ws/events/", headers=headers + (extra or []))
    if scheme:
        comm.scope["scheme"] = scheme
    if client:
        comm.scope["client"] = client
    connected, code = await comm.connect(timeout=5)
    if connected:
        await comm.disconnect()
    return connected, code


@pytest.mark.django_db(transaction=True)
async def test_same_origin_with_the_victims_cookie_is_accepted(layer, alice):
    assert (await handshake(alice, "http://127.0.0.1"))[0]
    assert (await handshake(alice, "http://127.0.0.1:8000", host="127.0.0.1:8000"))[0]
    assert (await handshake(alice, "https://127.0.0.1", scheme="wss"))[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("origin", ["http://127.0.0.1:9999", "https://127.0.0.1", "http://evil.example",
                                    "http://127.0.0.1.evil.example", "null", None])
async def test_another_origin_is_refused(layer, alice, origin):
    connected, _ = await handshake(alice, origin)
    assert not connected


@pytest.mark.django_db(transaction=True)
async def test_a_host_outside_allowed_hosts_is_refused_even_with_a_matching_origin(layer, alice):
    """DNS rebinding: the attacker's name pointed at this server is its own origin."""
    assert not (await handshake(alice, "http://evil.example", host="evil.example"))[0]


@pytest.mark.django_db(transaction=True)
async def test_scheme_from_a_trusted_proxy_and_trusted_origins(layer, alice, settings):
    settings.FORWARDED_ALLOW_IPS = "10.0.0.2"
    https = [(b"x-forwarded-proto", b"https")]
    assert (await handshake(alice, "https://127.0.0.1", client=("10.0.0.2", 40000), extra=https))[0]
    assert not (await handshake(alice, "http://127.0.0.1", client=("10.0.0.2", 40000), extra=https))[0]
    # The same header from anyone else is not believed.
    assert not (await handshake(alice, "https://127.0.0.1", client=("198.51.100.7", 40000), extra=https))[0]
    settings.CSRF_TRUSTED_ORIGINS = ["https://photos.example.org", "https://*.example.net"]
    assert (await handshake(alice, "https://photos.example.org"))[0]
    assert (await handshake(alice, "https://app.example.net"))[0]
    assert not (await handshake(alice, "http://photos.example.org"))[0]
    assert not (await handshake(alice, "https://photos.example.org:8443"))[0]


# --- Frames the page never sends -----------------------------------------------------------
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("frame", [{"text_data": "not json {"}, {"bytes_data": b"\x00\x01binary"},
                                   {"text_data": "[" * 100_000}])
async def test_a_malformed_frame_closes_the_socket_with_1003(layer, alice, frame):
    comm = communicator(alice)
    assert (await comm.connect())[0]
    await comm.send_to(**frame)
    # An exception in the consumer would be raised here instead (the old "Exception in ASGI application").
    assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 1003}
    await comm.disconnect()  # the server's answer to the close; the consumer ends without raising


@pytest.mark.django_db(transaction=True)
async def test_a_json_frame_is_ignored_and_the_socket_stays(layer, alice):
    comm = communicator(alice)
    assert (await comm.connect())[0]
    await comm.send_json_to({"hello": 1})
    assert await comm.receive_nothing(timeout=0.3)
    await comm.disconnect()
