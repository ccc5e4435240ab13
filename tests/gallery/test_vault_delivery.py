"""Vault bytes on the way out: whole, ranges across many chunks, read ahead for long spans,
a client that leaves half-way; on local disk and on S3 (through the block cache)."""

from __future__ import annotations

import asyncio
import os

import pytest
from django.test import Client

from gallery.delivery import sources, views
from gallery.models import Media
from gallery.vault import crypto
from tests.vault_support import vault_open_for, vault_settings, vault_upload  # noqa: F401

pytestmark = pytest.mark.usefixtures("vault_settings")


@pytest.mark.parametrize("storage", ["local", "s3"], indirect=True)
def test_long_spans_and_ranges_of_a_vault_item(storage, alice_api, settings, tmp_path,
                                              django_capture_on_commit_callbacks):
    settings.BLOB_CACHE_DIR = tmp_path / "block-cache"
    vault_open_for(alice_api)
    data = os.urandom(6 * 2**20 + 12345)
    item = vault_upload(alice_api, data, "blob.bin", django_capture_on_commit_callbacks).json()
    media = Media.objects.get(pk=item["id"])
    assert media.size == len(data)
    client = Client(HTTP_AUTHORIZATION=alice_api._credentials["HTTP_AUTHORIZATION"])
    whole = client.get(item["original_url"])
    assert whole.status_code == 200 and b"".join(whole.streaming_content) == data
    for first, last in [(0, 0), (65535, 65536), (100, 5 * 2**20), (len(data) - 70000, len(data) - 1),
                        (3 * crypto.CHUNK_SIZE, 3 * crypto.CHUNK_SIZE + 10)]:
        part = client.get(item["original_url"], HTTP_RANGE=f"bytes={first}-{last}")
        assert part.status_code == 206 and b"".join(part.streaming_content) == data[first:last + 1], (first, last)
    # A client that leaves after the first piece: the read-ahead stops, nothing hangs.
    response = client.get(item["original_url"])
    pieces = iter(response.streaming_content)
    assert next(pieces) == data[:crypto.CHUNK_SIZE]
    response.close()


async def test_a_long_body_is_read_ahead_in_order_and_closed_when_the_client_leaves():
    """A body past READ_AHEAD_OVER is read by a thread of its own, a few pieces ahead: every
    piece arrives in order; a reader's error reaches the sender; a client that leaves ends
    the reading and closes the iterator in the reading thread."""
    import threading

    size = views.READ_AHEAD_OVER // 8 + 1
    pieces = [bytes([i]) * size for i in range(20)]
    length = size * len(pieces)
    assert [piece async for piece in views._in_threads(iter(pieces), length)] == pieces

    def failing():
        yield from pieces[:12]
        raise OSError("the blob is shorter than recorded")

    received = []
    with pytest.raises(OSError, match="shorter"):
        async for piece in views._in_threads(failing(), length):
            received.append(piece)
    assert received == pieces[:12]

    events = []

    def endless():
        try:
            while True:
                events.append("read")
                yield bytes(size)
        finally:
            events.append(("closed", threading.current_thread().name))

    body = views._in_threads(endless(), 10**12)
    assert len(await anext(body)) == size and len(await anext(body)) == size
    await body.aclose()
    for _ in range(100):
        if ("closed", "delivery-ahead") in events:
            break
        await asyncio.sleep(0.01)
    assert events[-1] == ("closed", "delivery-ahead")
    # At most READ_AHEAD pieces past the two taken were read before the client left.
    assert events.count("read") <= 2 + views.READ_AHEAD + 1


@pytest.mark.django_db(transaction=True)
def test_vault_thumbnails_over_the_production_app(live_asgi, corpus):
    """Through uvicorn and config.asgi (the express lane refuses vault items and the full path
    answers them): the unlocked key gets the thumbnail and a range, another key a 404."""
    import requests

    from gallery.services.accounts import user_create
    from tests.conftest import GB, api_client

    owner = user_create(username="vault-live", password="vault-live-password", quota_bytes=10 * GB)
    client = api_client(owner)
    vault_open_for(client)
    import io

    stream = io.BytesIO((corpus / "jpg" / "Canon_40D.jpg").read_bytes())
    stream.name = "live.jpg"
    item = client.post("/api/v1/media/", {"file": stream, "vault": "true"}, format="multipart").json()
    item = client.get(f"/api/v1/vault/media/{item['id']}/").json()
    key = {"Authorization": client._credentials["HTTP_AUTHORIZATION"]}
    other = {"Authorization": api_client(owner)._credentials["HTTP_AUTHORIZATION"]}
    thumb = requests.get(live_asgi.url(item["variants"]["3s"]["url"]), headers=key, timeout=30)
    assert thumb.status_code == 200 and thumb.content[:4] == b"RIFF"
    assert thumb.headers["Cache-Control"] == "private, no-store"
    ranged = requests.get(live_asgi.url(item["original_url"]), headers={**key, "Range": "bytes=0-99"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == (corpus / "jpg" / "Canon_40D.jpg").read_bytes()[:100]
    assert requests.get(live_asgi.url(item["variants"]["3s"]["url"]), headers=other, timeout=30).status_code == 404


def test_a_decrypted_piece_is_never_overwritten_while_anything_refers_to_it():
    """VaultSource reuses its decrypted-piece buffers only once nothing refers to them: pieces
    a server still holds (all of them, here) keep their bytes; released ones are reused."""
    data = os.urandom(5 * 2**20 + 123)
    key, file_id = crypto.new_key(), b"f" * 16
    blob = crypto.encrypt_bytes(key, file_id, data)

    class InMemory(sources.Source):
        def read(self, first, last):
            yield blob[first:last + 1]

    source = sources.VaultSource(InMemory(), file_key=key, file_id=file_id, size=len(data))
    held = list(source.read(0, len(data) - 1))
    assert len({id(piece.obj) for piece in held}) == len(held) == 6
    assert b"".join(held) == data
    del held
    buffers, offset = set(), 0
    for piece in source.read(0, len(data) - 1):
        buffers.add(id(piece.obj))
        assert piece == data[offset:offset + len(piece)]
        offset += len(piece)
    assert offset == len(data) and len(buffers) < 6  # released buffers came back
