"""GET /api/v1/media/ through the lean door (config.asgi.lean, gallery.delivery.fast): the same
answers as Django's full stack, its threads' database connections kept, and a page freed by
reference counting when it has been sent (nothing of it left for the garbage collector)."""

from __future__ import annotations

import gc

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.db.backends.signals import connection_created

from gallery.delivery import fast
from gallery.services.accounts import apikey_create
from tests.gallery.test_delivery_fast import asgi_get

pytestmark = pytest.mark.django_db(transaction=True)


def test_get_and_head_of_the_list_take_the_lean_door():
    from config.asgi import lean

    scope = {"type": "http", "method": "GET", "path": "/api/v1/media/"}
    assert lean(scope) and lean({**scope, "method": "HEAD"})
    assert not lean({**scope, "method": "POST"}) and not lean({**scope, "type": "websocket"})
    for path in ("/api/v1/media", "/api/v1/media/exists/", "/api/v1/me/", "/api/v1/albums/",
                 "/api/v1/media/0b7e5c39-3e0f-4a3f-9a57-9a3f1d6f2c11/"):
        assert not lean({**scope, "path": path}), path


async def test_the_list_answers_like_the_full_stack(alice, charlie, make_media):
    from config.asgi import application, django_asgi_app

    await sync_to_async(make_media)(alice, 7)
    keys = {who: (await sync_to_async(apikey_create)(user=user, name="k", scopes=["media.read"]))[1]
            for who, user in (("owner", alice), ("stranger", charlie))}
    lean_first = await asgi_get(application, "/api/v1/media/", {"authorization": f"Bearer {keys['owner']}"},
                                query=b"page_size=3")
    cursor = lean_first[2].split(b"cursor=")[1].split(b'"')[0]
    queries = [b"page_size=3", b"page_size=3&cursor=" + cursor, b"kind=document", b"kind=spaceship",
               b"cursor=not-one", b"page_size=0", b"page_size=%ff", b"bucket=2024-13"]
    for who, key in [*keys.items(), ("anonymous", None), ("bad key", "chip_00000000_nope")]:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        for query in queries:
            lean = await asgi_get(application, "/api/v1/media/", headers, query=query)
            full = await asgi_get(django_asgi_app, "/api/v1/media/", headers, query=query)
            assert lean[0] == full[0] and lean[2] == full[2], (who, query, lean[:3:2], full[:3:2])
            assert lean[0] < 500, (who, query)
            for name in ("content-type", "content-length", "www-authenticate", "x-content-type-options",
                         "x-frame-options", "vary"):
                assert lean[1].get(name) == full[1].get(name), (who, query, name)
    assert lean_first[0] == 200 and lean_first[2].count(b'"id"') == 3


async def test_one_thread_keeps_its_connection_and_a_fixed_number_of_queries(alice, make_media):
    await sync_to_async(make_media)(alice, 12)
    _, raw = await sync_to_async(apikey_create)(user=alice, name="k", scopes=["media.read"])
    app = fast.DeliveryApp(threads=1)
    queries, opened = [], []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    def on_open(sender, connection, **kwargs):
        opened.append(sender)

    app.pool.submit(lambda: connection.execute_wrappers.append(count)).result()
    connection_created.connect(on_open)
    try:
        headers = {"authorization": f"Bearer {raw}"}
        await asgi_get(app, "/api/v1/media/", headers)  # the key's first use is recorded
        per_page = []
        for size in (2, 5, 12):
            before = len(queries)
            status, _, body = await asgi_get(app, "/api/v1/media/", headers, query=f"page_size={size}".encode())
            assert status == 200 and body.count(b'"id"') == size
            per_page.append(len(queries) - before)
    finally:
        connection_created.disconnect(on_open)
        app.pool.submit(lambda: (connection.execute_wrappers.remove(count), connection.close())).result()
        app.pool.shutdown()
    # The key, the count, the page, its variants, albums and tags, whatever the page's size.
    assert per_page == [6, 6, 6], per_page
    if not settings.DATABASES["default"].get("OPTIONS", {}).get("pool"):
        assert len(opened) <= 1  # opened once (or before the test), then kept (a pool's are lent per request)


async def test_a_sent_page_leaves_nothing_for_the_garbage_collector(alice, make_media):
    """DRF's view, request and response refer to one another; a page hanging from them (its
    MediaRows, their relations and the JSON) was freed only by a collection that walked it."""
    from config.asgi import application
    from media_api.views.media import MediaRow

    await sync_to_async(make_media)(alice, 30)
    _, raw = await sync_to_async(apikey_create)(user=alice, name="k", scopes=["media.read"])
    headers = {"authorization": f"Bearer {raw}"}
    await asgi_get(application, "/api/v1/media/", headers)
    gc.collect()
    gc.disable()
    try:
        status, _, body = await asgi_get(application, "/api/v1/media/", headers)
        left = [o for o in gc.get_objects() if type(o) is MediaRow]
    finally:
        gc.enable()
    assert status == 200 and body.count(b'"id"') == 30
    assert left == []
