"""The lane's streams (gallery.delivery.streams): originals, ranges, conditional requests, larger
variants and x-accel answers of /m/ get the lean door's exact answer without Django's request,
decided afresh for every request, and vault items decrypted for the credential that holds the
vault open; what the lane does not take (several ranges, 412 and 416, strangers, anonymous
calls, a locked vault) is the lean door's own answer."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from django.db.models import F
from django.test import Client
from django.utils.http import http_date

from gallery.delivery import fast, streams
from gallery.delivery import views as delivery
from gallery.models import Media, User
from gallery.services.media import usage_add
from gallery.storage import media_storage
from tests.gallery.conftest import door_fixtures, loop_door
from tests.gallery.test_delivery import make_media, make_variant
from tests.gallery.test_delivery_express import CHANGES, both_credentials, key_of, session_of
from tests.vault_support import vault_open_for, vault_settings  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db(transaction=True)

MIB = 2**20
DATA = os.urandom(2 * MIB + MIB // 2 + 17)  # three chunks
PICTURE = os.urandom(300 * 1024)  # a variant over the express lane's 256 KiB


async def _call(app, path: str, headers: dict[str, str], *, method: str = "GET", query: bytes = b"",
                client: str = "127.0.0.1", leave_after: int | None = None):
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in {"host": "localhost", **headers}.items()],
             "client": (client, 50000), "server": ("localhost", 80)}
    sent, gone, first = [], asyncio.Event(), True

    async def receive():
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        if leave_after is not None and sum(1 for m in sent if m.get("body")) >= leave_after:
            gone.set()  # the client leaves

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    bodies = [bytes(m.get("body", b"")) for m in sent if m["type"] == "http.response.body"]
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, b"".join(bodies), bodies


def call(app, path: str, headers: dict[str, str], **kwargs):
    """(status, headers, body) of one request through an ASGI app, as uvicorn would make it."""
    return asyncio.run(_call(app, path, headers, **kwargs))[:3]


def spied(door: fast.DeliveryApp) -> fast.DeliveryApp:
    """Records whether the lane's streams answered (True) or left the request (False)."""
    door.served = []
    real = door.streams.serve

    async def serve(*args):
        door.served.append(await real(*args))
        return door.served[-1]

    door.streams.serve = serve
    return door


app, threaded_app = door_fixtures(spied)


@pytest.fixture
def clip(alice) -> Media:
    media = make_media(alice, DATA, filename="Clip été.mp4", content_type="video/mp4")
    make_variant(media, "6", PICTURE)
    # Counted as media_record counts it, so that media_delete can uncount it.
    usage_add(media=media, count=1)
    User.objects.filter(pk=alice.pk).update(used_bytes=F("used_bytes") + media.size)
    return Media.objects.get(pk=media.pk)


def validators(app, path: str, headers: dict[str, str]) -> tuple[str, str]:
    answer = call(app, path, headers, method="HEAD")[1]
    return answer["etag"], answer["last-modified"]


def cases(size: int, etag: str, last_modified: str) -> list[tuple[str, dict[str, str], bytes, int]]:
    """(name, headers, query, status) of the requests the lane answers, for a file of `size` bytes."""
    middle = size // 2
    return [
        ("whole", {}, b"", 200),
        ("download", {}, b"download=1", 200),
        ("first bytes", {"range": "bytes=0-9"}, b"", 206),
        ("in the middle", {"range": f"bytes={middle - 5}-{middle + MIB + 5}"}, b"", 206),
        ("to the end", {"range": "bytes=100-"}, b"", 206),
        ("suffix", {"range": "bytes=-500"}, b"", 206),
        ("past the end", {"range": f"bytes=10-{10 * size}"}, b"", 206),
        ("malformed", {"range": "bytes=abc"}, b"", 200),
        ("if-range matches", {"range": "bytes=0-9", "if-range": etag}, b"", 206),
        ("if-range differs", {"range": "bytes=0-9", "if-range": '"other"'}, b"", 200),
        ("if-range date", {"range": "bytes=0-9", "if-range": last_modified}, b"", 206),
        ("if-none-match", {"if-none-match": etag}, b"", 304),
        ("if-none-match other", {"if-none-match": '"other"', "range": "bytes=5-6"}, b"", 206),
        ("if-modified-since", {"if-modified-since": http_date(time.time())}, b"", 304),
        ("if-match", {"if-match": etag, "range": "bytes=3-4"}, b"", 206),
        ("if-unmodified-since", {"if-unmodified-since": http_date(time.time() + 60)}, b"", 200),
    ]


@pytest.mark.parametrize("door", ["app", "threaded_app"])
def test_the_lane_answers_exactly_as_the_lean_door(door, alice, clip, lean, request):
    app = request.getfixturevalue(door)
    credentials = {"session": session_of(alice, "alice-password"), "api key": key_of(alice)}
    for level in ("0", "6"):
        path = f"/m/{clip.token}/{level}/"
        data = DATA if level == "0" else PICTURE
        for who, credential in credentials.items():
            for name, headers, query, status in cases(len(data), *validators(lean, path, credential)):
                if level == "6" and query:
                    continue
                for method in ("GET", "HEAD"):
                    for extra, client in (({}, "127.0.0.1"), ({"x-forwarded-proto": "https"}, "127.0.0.1")):
                        what = (level, who, name, method, extra)
                        before = len(app.served)
                        ours = call(app, path, {**credential, **headers, **extra}, method=method, query=query,
                                    client=client)
                        reference = call(lean, path, {**credential, **headers, **extra}, method=method, query=query,
                                         client=client)
                        assert app.served[before:] == [True], what
                        assert ours == reference, what
                        assert ours[0] == status, what
                        if status == 200 and method == "GET":
                            assert ours[2] == data, what
    # The bytes of a range are the file's.
    ranged = call(app, f"/m/{clip.token}/0/", {**credentials["api key"], "range": f"bytes={MIB - 5}-{2 * MIB + 5}"})
    assert ranged[2] == DATA[MIB - 5:2 * MIB + 6]
    assert ranged[1]["content-disposition"] == "inline; filename=\"Clip ete.mp4\"; filename*=UTF-8''Clip%20%C3%A9t%C3%A9.mp4"


def test_what_the_lane_leaves_to_the_lean_door(alice, charlie, clip, app, lean):
    path, key = f"/m/{clip.token}/0/", key_of(alice)
    for headers, status in (({**key, "range": "bytes=0-1,5-6"}, 206),  # multipart/byteranges
                            ({**key, "range": f"bytes={len(DATA)}-"}, 416),
                            ({**key, "if-match": '"other"'}, 412),
                            (key_of(charlie), 404), (session_of(charlie, "charlie-password"), 404),
                            ({"authorization": key["authorization"][:-1] + "x"}, 404)):
        before = len(app.served)
        ours, reference = call(app, path, headers), call(lean, path, headers)
        assert ours[0] == status and app.served[before:] == [False], headers
        # (A 404 page carries a fresh CSRF cookie, multipart a fresh boundary: the type is what matches.)
        assert ours[0] == reference[0] and ours[1].get("content-type", "")[:20] == reference[1].get("content-type", "")[:20], headers
        if status == 206:
            assert ours[1]["content-type"].startswith("multipart/byteranges")
    # Not even asked: anonymous calls, provider tokens, a duplicated Range.
    for headers in ({}, {"authorization": "Bearer not-a-chip-key"}):
        before = len(app.served)
        assert call(app, path, headers)[0] == 404 and app.served[before:] == [False]
    assert streams.StreamLane(app.express, app.pool).ask(
        {"type": "http", "method": "GET", "query_string": b"",
         "headers": [(b"host", b"localhost"), (b"range", b"bytes=0-1"), (b"range", b"bytes=2-3"),
                     (b"authorization", key["authorization"].encode())]}, clip.token, "0") is None


def test_the_lane_on_sqlite_decides_on_the_event_loop_with_two_reads(alice, clip):
    door, submitted = loop_door()
    queries = []
    key = key_of(alice)
    try:
        path = f"/m/{clip.token}/0/"
        assert call(door, path, {**key, "range": "bytes=0-9"})[0] == 206  # the first compiles, in a thread
        door.express.loop_connection().set_trace_callback(queries.append)
        for level in ("0", "6"):
            before, hops = len(queries), len(submitted)
            status, _, body = call(door, f"/m/{clip.token}/{level}/", {**key, "range": "bytes=10-19"})
            assert status == 206 and body == (DATA if level == "0" else PICTURE)[10:20]
            assert len(submitted) == hops  # no trip to a delivery thread
            assert len(queries) - before == 2 and "gallery_apikey" in queries[before], queries[before:]
    finally:
        door.pool.shutdown()


def test_reads_that_would_wait_go_to_a_thread(alice, clip, app):
    app.streams.nowait = False  # as on a file system without RWF_NOWAIT, or pages not in memory
    key = key_of(alice)
    status, _, body = call(app, f"/m/{clip.token}/0/", key)
    assert status == 200 and body == DATA and app.served == [True]


def test_a_client_that_leaves_stops_the_reading(alice, clip, app):
    status, _, _, bodies = asyncio.run(_call(app, f"/m/{clip.token}/0/", key_of(alice), leave_after=1))
    assert status == 200 and app.served == [True]
    assert bodies == [DATA[:streams.CHUNK_SIZE]]  # nothing read or sent after the client left


def test_a_file_shorter_than_recorded_drops_the_connection(alice, clip, app):
    path = media_storage().path(clip.original_key)
    with open(path, "r+b") as fh:
        fh.truncate(MIB + 10)
    with pytest.raises(OSError, match="shorter than recorded"):
        call(app, f"/m/{clip.token}/0/", key_of(alice))  # headers sent, then the first short chunk


@pytest.mark.parametrize("change", CHANGES)
def test_every_change_ends_access_with_the_next_request(change, alice, clip, app):
    client, key, credentials = both_credentials(alice)
    path = f"/m/{clip.token}/0/"
    for headers in credentials.values():
        assert call(app, path, {**headers, "range": "bytes=0-9"})[0] == 206
    assert all(app.served)
    act, ended = CHANGES[change]
    act({"client": client, "user": alice, "key": key, "media": clip})
    for who, headers in credentials.items():
        assert call(app, path, {**headers, "range": "bytes=0-9"})[0] == (404 if who in ended else 206), (change, who)


def test_x_accel_answers_as_the_lean_door(settings, alice, clip):
    settings.DELIVERY_MODE = "x-accel"
    app, lean = spied(fast.DeliveryApp(threads=1)), fast.DeliveryApp(threads=1)
    lean.express.reason_off = lean.streams.reason_off = "the reference"
    try:
        for credential in (key_of(alice), session_of(alice, "alice-password")):
            for level, headers, query in (("0", {}, b""), ("0", {"range": "bytes=0-9"}, b"download=1"),
                                          ("6", {"if-none-match": "*"}, b""), ("3s", {}, b"")):
                path = f"/m/{clip.token}/{level}/"
                ours = call(app, path, {**credential, **headers}, query=query)
                if level == "3s":
                    assert ours[0] == 404 and app.served[-1] is False  # no such variant: the lean door's 404
                    continue
                assert ours == call(lean, path, {**credential, **headers}, query=query)
                assert app.served[-1] is True and ours[0] == 200 and ours[2] == b""
                key = clip.original_key if level == "0" else clip.variants.get(level=level).storage_key
                assert ours[1]["x-accel-redirect"] == settings.DELIVERY_ACCEL_PREFIX + key
                # A length, so nginx keeps its connection to us for the next request.
                assert ours[1]["content-length"] == "0"
    finally:
        app.pool.shutdown()
        lean.pool.shutdown()


@pytest.mark.usefixtures("vault_settings")
@pytest.mark.parametrize("mode", ["stream", "x-accel"])
def test_vault_items_are_answered_as_the_lean_door_answers_them(settings, mode, alice, alice_api, lean,
                                                                django_capture_on_commit_callbacks):
    """A vault item's original, whole or ranged, decrypted (never x-accel), for the API key and
    the web session that hold the vault open: the lean door's very answer; locked, the lean
    door's 404."""
    from gallery.vault import keys
    from tests.vault_support import PASSPHRASE, vault_upload

    settings.DELIVERY_MODE = mode
    vault_open_for(alice_api)
    item = vault_upload(alice_api, DATA, "secret été.bin", django_capture_on_commit_callbacks).json()
    web = Client()
    assert web.login(username=alice.username, password="alice-password")
    assert web.post("/api/v1/vault/unlock", {"passphrase": PASSPHRASE}, content_type="application/json").status_code == 200
    credentials = {
        "api key": {"authorization": alice_api._credentials["HTTP_AUTHORIZATION"]},
        "session": {"cookie": f"sessionid={web.cookies['sessionid'].value}; {keys.COOKIE}={web.cookies[keys.COOKIE].value}"},
    }
    app = spied(fast.DeliveryApp(threads=2))
    path = item["original_url"]
    try:
        for who, credential in credentials.items():
            for name, headers, query, status in cases(len(DATA), *validators(lean, path, credential)):
                for method in ("GET", "HEAD"):
                    what = (who, name, method)
                    before = len(app.served)
                    ours = call(app, path, {**credential, **headers}, method=method, query=query)
                    reference = call(lean, path, {**credential, **headers}, method=method, query=query)
                    assert app.served[before:] == [True], what
                    assert ours == reference and ours[0] == status, what
                    assert "x-accel-redirect" not in ours[1] and ours[1]["cache-control"] == delivery.VAULT_CACHE_CONTROL
                    if status == 200 and method == "GET":
                        assert ours[2] == DATA, what
        assert call(app, path, {**credentials["api key"], "range": "bytes=100-199"})[2] == DATA[100:200]
        # The session without its vault cookie, and the key once locked: the lean door's 404.
        for credential in ({"cookie": f"sessionid={web.cookies['sessionid'].value}"}, credentials["api key"]):
            if "authorization" in credential:
                assert alice_api.post("/api/v1/vault/lock").status_code == 204
            before = len(app.served)
            assert call(app, path, credential)[0] == 404 and app.served[before:] == [False]
    finally:
        app.pool.shutdown()


@pytest.mark.usefixtures("vault_settings")
def test_vault_variants_are_answered_as_the_lean_door_answers_them(settings, alice, alice_api, lean, corpus,
                                                                   django_capture_on_commit_callbacks):
    """A processed vault photo's variants (the lane's compiled vault query, views' own Target),
    whole, ranged and conditional: the lean door's very answer; another key of the owner, which
    did not unlock, gets the lean door's 404."""
    from tests.conftest import api_client
    from tests.vault_support import vault_upload

    settings.DELIVERY_MODE = "stream"
    vault_open_for(alice_api)
    item = vault_upload(alice_api, (corpus / "jpg" / "Canon_40D.jpg").read_bytes(), "thumb.jpg",
                        django_capture_on_commit_callbacks).json()
    item = alice_api.get(f"/api/v1/vault/media/{item['id']}/").json()
    assert len(item["variants"]) >= 2
    credential = {"authorization": alice_api._credentials["HTTP_AUTHORIZATION"]}
    other = {"authorization": api_client(alice)._credentials["HTTP_AUTHORIZATION"]}
    app = spied(fast.DeliveryApp(threads=2))
    try:
        for level, variant in item["variants"].items():
            path = variant["url"]
            whole = call(lean, path, credential)
            assert whole[0] == 200 and whole[2][:4] == b"RIFF", level
            for name, headers, query, _ in cases(len(whole[2]), *validators(lean, path, credential)):
                what = (level, name)
                before = len(app.served)
                ours = call(app, path, {**credential, **headers}, query=query)
                reference = call(lean, path, {**credential, **headers}, query=query)
                assert ours == reference, what
                # A tiny variant turns some cases into a 416, which is the lean door's own.
                assert app.served[before:] == [reference[0] in (200, 206, 304)], what
            before = len(app.served)
            assert call(app, path, other)[0] == 404 and app.served[before:] == [False], level
    finally:
        app.pool.shutdown()
