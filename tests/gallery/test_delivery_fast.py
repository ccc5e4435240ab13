"""The lean door for /m/ (gallery.delivery.fast): the same answers as Django's full stack, in
two hops to a fixed pool whose database connections persist, and nothing cached that could
outlive a logout, a revoked key, a rotated token or a trashed media."""

from __future__ import annotations

import asyncio
import threading

import pytest
import requests
from django.db import connection
from django.db.backends.signals import connection_created
from django.test import Client
from django.utils import timezone

from gallery.delivery import fast
from gallery.models import Media
from gallery.services.accounts import apikey_create, apikey_revoke
from gallery.services.media import media_rotate_token
from tests.conftest import api_client
from tests.gallery.conftest import loop_door

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def photo(alice, upload, corpus) -> Media:
    response = upload(api_client(alice), corpus / "jpg" / "Canon_40D.jpg")
    media = Media.objects.get(pk=response.json()["id"])
    assert media.status == Media.Status.READY
    return media


async def asgi_get(app, path: str, headers: dict[str, str] | None = None,
                   query: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One GET through an ASGI app, as uvicorn would call it."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in {"host": "testserver", **(headers or {})}.items()],
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    sent: list[dict] = []
    bodies = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        if bodies:
            return bodies.pop()
        await asyncio.Event().wait()  # the client stays connected until the server is done

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, body


def test_only_get_and_head_of_delivery_urls_take_the_lean_door():
    scope = {"type": "http", "method": "GET", "path": "/m/abcDEF_-12/3s/"}
    assert fast.handles(scope) and fast.handles({**scope, "method": "HEAD"})
    assert not fast.handles({**scope, "method": "POST"})
    for path in ("/m/abc/3s", "/m/abc/3s/x/", "/api/v1/media/", "/m/a b/1/", "/m/abc/LEVEL/"):
        assert not fast.handles({**scope, "path": path}), path
    assert not fast.handles({**scope, "type": "websocket"})


async def test_one_hop_one_thread_persistent_connection_and_a_fixed_number_of_queries(alice, photo, settings):
    from asgiref.sync import sync_to_async

    settings.DELIVERY_INLINE = False  # the lane in a thread, as on PostgreSQL (inline: the next test)
    _, raw = await sync_to_async(apikey_create)(user=alice, name="k", scopes=["media.read"])
    app = fast.DeliveryApp(threads=1)
    submitted = []
    real_submit = app.pool.submit
    app.pool.submit = lambda *a, **k: submitted.append(a[0]) or real_submit(*a, **k)
    queries, threads, opened = [], set(), []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        threads.add(threading.get_ident())
        return execute(sql, params, many, context)

    def on_open(sender, connection, **kwargs):
        opened.append(threading.get_ident())

    real_submit(lambda: connection.execute_wrappers.append(count)).result()
    connection_created.connect(on_open)
    try:
        path = f"/m/{photo.token}/3s/"
        # The key's first use: the express lane and its streams hand it to the lean door, which
        # records it (a hop for each lane, then the lean door's two: the response, its close).
        await asgi_get(app, path, {"authorization": f"Bearer {raw}"})
        assert len(submitted) == 4
        for _ in range(5):
            before, hops = len(queries), len(submitted)
            status, headers, body = await asgi_get(app, path, {"authorization": f"Bearer {raw}"})
            assert status == 200 and headers["content-type"] == "image/webp" and body
            # The express lane: one trip from the event loop, two reads (the key with its
            # user's is_active, then the variant through the visibility rule).
            assert len(submitted) - hops == 1
            assert len(queries) - before == 2, queries[before:]
            assert "gallery_apikey" in queries[before] and "gallery_variant" in queries[before + 1]
        # A Range goes to the lane's streams (gallery.delivery.streams): one hop, which also
        # reads the bytes, and the same two reads.
        for level in ("3s", "0"):
            before, hops = len(queries), len(submitted)
            status, _, body = await asgi_get(app, f"/m/{photo.token}/{level}/",
                                             {"authorization": f"Bearer {raw}", "range": "bytes=0-9"})
            assert status == 206 and len(body) == 10
            assert len(submitted) - hops == 1 and len(queries) - before == 2, queries[before:]
            assert "gallery_apikey" in queries[before] and "gallery_media" in queries[before + 1]
    finally:
        connection_created.disconnect(on_open)
        real_submit(lambda: (connection.execute_wrappers.remove(count), connection.close())).result()
        app.pool.shutdown()
    assert len(threads) == 1
    if not settings.DATABASES["default"].get("OPTIONS", {}).get("pool"):
        assert len(opened) <= 1  # opened once (or before the test), then kept (a pool's are lent per request)


async def test_on_sqlite_the_lane_runs_on_the_event_loop_with_no_hop_and_two_reads(alice, photo):
    from asgiref.sync import sync_to_async

    from gallery.models import ApiKey

    key, raw = await sync_to_async(apikey_create)(user=alice, name="k", scopes=["media.read"])
    await sync_to_async(ApiKey.objects.filter(pk=key.pk).update)(last_used_at=timezone.now())
    app, submitted = loop_door()
    queries = []
    path, headers = f"/m/{photo.token}/3s/", {"authorization": f"Bearer {raw}"}
    try:
        assert (await asgi_get(app, path, headers))[0] == 200  # the first compiles the queries, in a thread
        app.express.loop_connection().set_trace_callback(queries.append)
        for _ in range(5):
            before, hops = len(queries), len(submitted)
            status, _, body = await asgi_get(app, path, headers)
            assert status == 200 and body
            assert len(submitted) == hops  # no trip to a thread at all
            assert len(queries) - before == 2 and "gallery_apikey" in queries[before], queries[before:]
    finally:
        app.pool.shutdown()


async def test_on_postgresql_the_lane_asks_from_the_event_loop_one_query_for_many_requests(alice, photo,
                                                                                          monkeypatch):
    """No thread hop; one statement a request, and one for a whole turn of concurrent requests
    (gallery.delivery.pgbatch), each still decided on its own fresh rows."""
    import psycopg
    from asgiref.sync import sync_to_async

    from gallery.models import ApiKey

    app = fast.DeliveryApp(threads=1)
    if app.batches is None:
        app.pool.shutdown()
        pytest.skip("the batched lookups are PostgreSQL's")
    key, raw = await sync_to_async(apikey_create)(user=alice, name="k", scopes=["media.read"])
    await sync_to_async(ApiKey.objects.filter(pk=key.pk).update)(last_used_at=timezone.now())
    cookie = await sync_to_async(_session_cookie)(alice)
    submitted, statements = [], []
    real_submit = app.pool.submit
    app.pool.submit = lambda *a, **k: submitted.append(a[0]) or real_submit(*a, **k)
    real_execute = psycopg.AsyncCursor.execute

    async def execute(cursor, query, *args, **kwargs):
        statements.append(query)
        return await real_execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", execute)
    path, by_key, by_session = f"/m/{photo.token}/3s/", {"authorization": f"Bearer {raw}"}, {"cookie": cookie}
    try:
        assert (await asgi_get(app, path, by_key))[0] == 200  # the first compiles the queries, in a thread
        assert len(submitted) == 1 and statements == []
        # A session new to this process: its user comes out of its data, then a second statement.
        assert (await asgi_get(app, path, by_session))[0] == 200
        assert len(statements) == 2
        for headers in (by_key, by_session) * 3:
            before = len(statements)
            status, _, body = await asgi_get(app, path, headers)
            assert status == 200 and body
            assert len(statements) - before == 1
            assert all(table in statements[-1] for table in ("gallery_apikey", "django_session", "gallery_variant"))
        # 32 at once, keys and sessions: one statement for all of them.
        before = len(statements)
        answers = await asyncio.gather(*(asgi_get(app, path, (by_key, by_session)[i % 2]) for i in range(32)))
        assert {status for status, _, _ in answers} == {200} and len({body for _, _, body in answers}) == 1
        assert len(statements) - before == 1
        assert len(submitted) == 1  # never a trip to a thread after the first request
        # Each is decided on its own rows: a wrong secret in the same batch is refused (the lean door's 404).
        _, other = await sync_to_async(apikey_create)(user=alice, name="other", scopes=["media.read"])
        wrong = {"authorization": f"Bearer {other[:-4]}{'beef' if not other.endswith('beef') else 'cafe'}"}
        mixed = await asyncio.gather(asgi_get(app, path, by_key), asgi_get(app, path, wrong))
        assert [status for status, _, _ in mixed] == [200, 404]
    finally:
        app.pool.shutdown()


def _session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def test_the_lean_door_answers_like_the_full_stack(alice, charlie, photo):
    """Same status, body and the headers that matter, for the owner, a stranger and anonymous,
    original and variant, through config.asgi's router (the lean door) and Django's own app."""
    from asgiref.sync import sync_to_async

    from config.asgi import application, django_asgi_app

    keys = {who: (await sync_to_async(apikey_create)(user=user, name="k", scopes=["media.read"]))[1]
            for who, user in (("owner", alice), ("stranger", charlie))}
    for level in ("0", "3s"):
        for who, key in [*keys.items(), ("anonymous", None)]:
            headers = {"authorization": f"Bearer {key}"} if key else {}
            lean = await asgi_get(application, f"/m/{photo.token}/{level}/", headers)
            full = await asgi_get(django_asgi_app, f"/m/{photo.token}/{level}/", headers)
            assert lean[0] == full[0] == (200 if who == "owner" else 404), (level, who)
            if lean[0] == 200:
                assert lean[2] == full[2]
                for name in ("content-type", "content-length", "etag", "cache-control", "content-security-policy",
                             "x-content-type-options", "x-frame-options", "content-disposition"):
                    assert lean[1].get(name) == full[1].get(name), (level, name)


async def test_bad_requests_are_4xx_never_500(alice, photo):
    from config.asgi import application

    path = f"/m/{photo.token}/3s/"
    assert (await asgi_get(application, path, query=b"download=\xff\xfe"))[0] == 400
    assert (await asgi_get(application, path, {"host": "evil.example"}))[0] == 400
    assert (await asgi_get(application, path, {"range": "bytes=\u00b2-"}))[0] in (200, 404)
    assert (await asgi_get(application, path, {"cookie": "sessionid=\u00e9\u00e9; x"}))[0] == 404


def test_changes_take_effect_at_once(alice, photo, live_asgi):
    """Nothing is cached per process: a logout, a revoked key, a rotated token and a trashed
    media each end access with the very next request."""
    path = f"/m/{photo.token}/3s/"
    browser = requests.Session()
    browser.get(live_asgi.url("/login/"))
    assert browser.post(live_asgi.url("/login/"), allow_redirects=False, data={
        "username": "alice", "password": "alice-password",
        "csrfmiddlewaretoken": browser.cookies["csrftoken"]}).status_code == 302
    assert browser.get(live_asgi.url(path)).status_code == 200
    key, raw = apikey_create(user=alice, name="phone", scopes=["media.read"])
    by_key = {"Authorization": f"Bearer {raw}"}
    assert requests.get(live_asgi.url(path), headers=by_key).status_code == 200

    apikey_revoke(key=key)
    assert requests.get(live_asgi.url(path), headers=by_key).status_code == 404
    old = path
    media_rotate_token(media=photo)
    assert browser.get(live_asgi.url(old)).status_code == 404
    new = f"/m/{Media.objects.get(pk=photo.pk).token}/3s/"
    assert browser.get(live_asgi.url(new)).status_code == 200
    Media.objects.filter(pk=photo.pk).update(trashed_at=timezone.now())
    assert browser.get(live_asgi.url(new)).status_code == 404
    Media.objects.filter(pk=photo.pk).update(trashed_at=None)
    assert browser.get(live_asgi.url(new)).status_code == 200
    logout = browser.post(live_asgi.url("/logout/"), headers={"X-CSRFToken": browser.cookies["csrftoken"]},
                          allow_redirects=False)
    assert logout.status_code in (200, 302)
    assert browser.get(live_asgi.url(new)).status_code == 404
    assert Client().get(new).status_code == 404
