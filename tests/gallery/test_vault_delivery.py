"""Vault bytes on the way out: whole, ranges across many chunks, read ahead for long spans,
a client that leaves half-way; on local disk and on S3 (through the block cache)."""

from __future__ import annotations

import os

import pytest
from django.test import Client

from gallery.delivery import sources
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


def test_read_ahead_yields_every_piece_in_order():
    pieces = [bytes([i]) * 10 for i in range(50)]
    assert list(sources._ahead(iter(pieces))) == pieces
    closed = []

    def generator():
        try:
            for piece in pieces:
                yield piece
        finally:
            closed.append(True)

    reader = sources._ahead(generator())
    assert next(reader) == pieces[0]
    reader.close()
    assert closed == [True]


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
