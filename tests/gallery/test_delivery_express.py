"""The express lane of /m/ (gallery.delivery.express): plain GETs and HEADs of variants get the
lean door's exact answer without Django's request, and every change that ends access (logout,
changed password, deactivated user, expired session, revoked key, trash, deletion, vault,
rotated token) counts with the very next request, in this process and in two others."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import requests
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from gallery.delivery import express, fast
from gallery.models import ApiKey, Media, MediaQuerySet, User
from gallery.services.accounts import apikey_create, apikey_revoke
from gallery.services.media import media_delete, media_rotate_token
from gallery.storage import media_storage
from tests.conftest import free_port, wait_for_port
from tests.gallery.conftest import door_fixtures
from tests.gallery.test_delivery_fast import photo  # noqa: F401  (the fixture)
from tests.gallery.test_worker import ROOT, database_url

pytestmark = pytest.mark.django_db(transaction=True)


def call(app, path: str, headers: dict[str, str] | None = None, *, method: str = "GET",
            client: str = "127.0.0.1", scheme: str = "http") -> tuple[int, dict[str, str], bytes]:
    """One request through an ASGI app, as uvicorn would make it."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": scheme,
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in {"host": "localhost", **(headers or {})}.items()],
             "client": (client, 50000), "server": ("localhost", 80)}
    sent: list[dict] = []

    async def run():
        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        await app(scope, receive, send)

    asyncio.run(run())
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, body


def spied(door: fast.DeliveryApp) -> fast.DeliveryApp:
    """Records what the lane answered, on the event loop ("here": SQLite's own connection, or
    PostgreSQL's batched lookups) or in a thread."""
    door.answered = []
    for name, where in (("answer_here", "here"), ("answer", "thread")):
        real = getattr(door.express, name)
        setattr(door.express, name,
                lambda ask, real=real, where=where: door.answered.append((where, real(ask))) or door.answered[-1][1])
    if door.batches is not None:
        batched = door.batches.answer

        async def answer(ask):
            door.answered.append(("here", await batched(ask)))
            return door.answered[-1][1]

        door.batches.answer = answer
    return door


app, threaded_app = door_fixtures(spied)


def session_of(user: User, password: str) -> dict[str, str]:
    client = Client()
    assert client.login(username=user.username, password=password)
    return {"cookie": f"sessionid={client.cookies['sessionid'].value}; csrftoken=not-a-token"}


def key_of(user: User, scopes=("media.read",)) -> dict[str, str]:
    key, raw = apikey_create(user=user, name="k", scopes=list(scopes))
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())  # its use was just recorded
    return {"authorization": f"Bearer {raw}"}


def lane_outcome(app, before: int) -> str:
    """"never asked", "refused" (handed to the lean door) or where it answered."""
    tried = app.answered[before:]
    if not tried:
        return "never asked"
    return next((where for where, result in tried if result is not None), "refused")


def served_by_the_lane(app, path: str, headers: dict[str, str]) -> bool:
    before = len(app.answered)
    status, _, _ = call(app, path, headers)
    return status == 200 and lane_outcome(app, before) in ("here", "thread")


@pytest.mark.parametrize("door", ["app", "threaded_app"])
def test_the_lane_answers_exactly_as_the_lean_door(door, alice, photo, lean, request):  # noqa: F811
    app = request.getfixturevalue(door)
    path = f"/m/{photo.token}/3s/"
    credentials = {"session": session_of(alice, "alice-password"), "api key": key_of(alice)}
    # Plain HTTP, HTTPS said by a trusted proxy (HSTS), the same header from anyone else (ignored).
    origins = {"plain": ({}, "127.0.0.1"), "trusted https": ({"x-forwarded-proto": "https"}, "127.0.0.1"),
               "untrusted https": ({"x-forwarded-proto": "https"}, "10.9.8.7")}
    for who, headers in credentials.items():
        for origin, (extra, client) in origins.items():
            for method in ("GET", "HEAD"):
                before = len(app.answered)
                ours = call(app, path, {**headers, **extra}, method=method, client=client)
                reference = call(lean, path, {**headers, **extra}, method=method, client=client)
                on_the_loop = app.express.inline or app.batches is not None
                expected = "here" if door == "app" and on_the_loop else "thread"
                if before == 0:
                    expected = "thread"  # the first request compiles the queries, in a thread
                assert lane_outcome(app, before) == expected, (who, origin, method)
                assert ours == reference, (who, origin, method)
                assert ours[0] == 200 and ("strict-transport-security" in ours[1]) == (origin == "trusted https")
    variant = Media.objects.get(pk=photo.pk).variants.get(level="3s")
    with media_storage().open(variant.storage_key) as fh:
        assert call(app, path, credentials["api key"])[2] == fh.read()


def test_what_the_lane_leaves_to_the_lean_door(alice, charlie, photo, app):  # noqa: F811
    path = f"/m/{photo.token}/3s/"
    key = key_of(alice)
    for headers, status in (({**key, "range": "bytes=0-9"}, 206), ({**key, "if-none-match": "*"}, 304),
                            ({}, 404), ({"authorization": "Bearer not-a-chip-key"}, 404)):
        before = len(app.answered)
        assert call(app, path, headers)[0] == status
        assert lane_outcome(app, before) == "never asked"
    assert call(app, f"/m/{photo.token}/0/", key)[0] == 200 and app.answered == []
    # Refusals are the lean door's own 404: a stranger, a wrong secret, an unknown level.
    stranger = {"session": session_of(charlie, "charlie-password"), "api key": key_of(charlie)}
    wrong = {"authorization": key["authorization"][:-2] + ("aa" if not key["authorization"].endswith("aa") else "bb")}
    for headers in (*stranger.values(), wrong, {"cookie": "sessionid=not-a-session-key"}):
        before = len(app.answered)
        assert call(app, path, headers)[0] == 404
        assert lane_outcome(app, before) == "refused"
    assert call(app, f"/m/{photo.token}/9z/", key)[0] == 404


CHANGES = {
    # name: (what it does, which credentials it ends)
    "logout": (lambda ctx: ctx["client"].logout(), {"session"}),
    "password changed": (lambda ctx: _set_password(ctx["user"]), {"session"}),
    "user deactivated": (lambda ctx: User.objects.filter(pk=ctx["user"].pk).update(is_active=False),
                         {"session", "api key"}),
    "session expired": (lambda ctx: Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1)),
                        {"session"}),
    "key revoked": (lambda ctx: apikey_revoke(key=ctx["key"]), {"api key"}),
    "media trashed": (lambda ctx: Media.objects.filter(pk=ctx["media"].pk).update(trashed_at=timezone.now()),
                      {"session", "api key"}),
    "media deleted": (lambda ctx: media_delete(media=Media.objects.get(pk=ctx["media"].pk)), {"session", "api key"}),
    "moved to the vault": (lambda ctx: Media.objects.filter(pk=ctx["media"].pk).update(in_vault=True),
                           {"session", "api key"}),
    "token rotated": (lambda ctx: media_rotate_token(media=Media.objects.get(pk=ctx["media"].pk)),
                      {"session", "api key"}),
}


def _set_password(user: User) -> None:
    user = User.objects.get(pk=user.pk)
    user.set_password("a-new-password")
    user.save()


def both_credentials(user: User) -> tuple[Client, ApiKey, dict[str, dict[str, str]]]:
    """alice logged in (her client) and a new API key of hers (recorded as just used): the
    headers of each, by name, for the tests that end access with one change or another."""
    client = Client()
    assert client.login(username=user.username, password="alice-password")
    key, raw = apikey_create(user=user, name="k", scopes=["media.read"])
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
    return client, key, {"session": {"cookie": f"sessionid={client.cookies['sessionid'].value}"},
                         "api key": {"authorization": f"Bearer {raw}"}}


@pytest.mark.parametrize("change", CHANGES)
def test_every_change_ends_access_with_the_next_request(change, alice, photo, app):  # noqa: F811
    path = f"/m/{photo.token}/3s/"
    client, key, credentials = both_credentials(alice)
    for who, headers in credentials.items():
        assert served_by_the_lane(app, path, headers), who
    act, ended = CHANGES[change]
    act({"client": client, "user": alice, "key": key, "media": photo})
    for who, headers in credentials.items():
        assert call(app, path, headers)[0] == (404 if who in ended else 200), (change, who)


def test_the_lane_turns_itself_off_for_a_rule_it_cannot_compile(monkeypatch):
    lane = express.Express(chain_for=fast.build_chain)
    assert lane._queries() is not None and not lane.reason_off
    assert len(lane._compiled["variant"].slots) == 3  # the user, the token, the level

    rules = {
        "reads more of the user than its id": lambda self, user: self.filter(owner=user, kind=user.username),
        "computes a value": lambda self, user: self.filter(owner=user, created_at__lte=timezone.now()),
    }
    for name, rule in rules.items():
        monkeypatch.setattr(MediaQuerySet, "visible_to", rule)
        lane = express.Express(chain_for=fast.build_chain)
        assert lane._queries() is None and "cannot be compiled" in lane.reason_off, name
        assert lane.ask({"type": "http", "method": "GET", "headers": [(b"host", b"localhost")]}, "t", "3s") is None


def test_two_processes_refuse_at_once(alice, photo, tmp_path):  # noqa: F811
    """Two web processes of their own, as a deployment runs them: each answers by the lane, and
    a revoked key, a logout and a trashed media end access in both with the next request."""
    env = {**os.environ, "DATABASE_URL": database_url(), "CHIPMUNK_DATA_DIR": str(settings.DATA_DIR),
           "JOBS_MODE": "inline", "LOG_LEVEL": "warning"}
    # The processes keep their blobs under the data dir's media/; the tests' storage is elsewhere.
    blob = settings.DATA_DIR / "media" / photo.variants.get(level="3s").storage_key
    blob.parent.mkdir(parents=True, exist_ok=True)
    with media_storage().open(photo.variants.get(level="3s").storage_key) as fh:
        blob.write_bytes(fh.read())
    ports = [free_port(), free_port()]
    servers = [subprocess.Popen([sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
                                 "--port", str(port), "--lifespan", "off", "--log-level", "warning",
                                 "--no-access-log"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=open(tmp_path / f"{port}.log", "wb"))
               for port in ports]
    try:
        for port in ports:
            wait_for_port(port, timeout=60)
        client = Client()
        assert client.login(username="alice", password="alice-password")
        key, raw = apikey_create(user=alice, name="k", scopes=["media.read"])
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
        session = {"Cookie": f"sessionid={client.cookies['sessionid'].value}"}
        by_key = {"Authorization": f"Bearer {raw}"}
        path = f"/m/{photo.token}/3s/"

        def status(port: int, headers: dict) -> int:
            return requests.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=10).status_code

        assert [status(p, h) for p in ports for h in (session, by_key)] == [200] * 4
        apikey_revoke(key=key)
        started = time.monotonic()
        assert [status(p, by_key) for p in ports] == [404, 404]
        assert [status(p, session) for p in ports] == [200, 200]
        client.logout()
        assert [status(p, session) for p in ports] == [404, 404]
        assert time.monotonic() - started < 2
        client.login(username="alice", password="alice-password")
        session = {"Cookie": f"sessionid={client.cookies['sessionid'].value}"}
        assert [status(p, session) for p in ports] == [200, 200]
        Media.objects.filter(pk=photo.pk).update(trashed_at=timezone.now())
        assert [status(p, session) for p in ports] == [404, 404]
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(10)


@pytest.mark.skipif(not settings.DATABASES["default"].get("OPTIONS", {}).get("pool"),
                    reason="psycopg's pool: DATABASE_POOL=true with PostgreSQL")
def test_with_the_pool_every_request_gives_its_connection_back(alice, charlie, photo, app):  # noqa: F811
    from django.db import connection

    def available() -> int:
        return connection.pool.get_stats().get("pool_available", 0)

    path = f"/m/{photo.token}/3s/"
    key, stranger = key_of(alice), key_of(charlie)
    call(app, path, key)
    before = available()
    # The lane, its refusals (the lean door's 404), anonymous calls and ranges (the lean door):
    # whichever of the door's threads runs a request or its close, none keeps a connection.
    for headers in (key, session_of(alice, "alice-password"), stranger, {}, {**key, "range": "bytes=0-3"}):
        for _ in range(4):
            call(app, path, headers)
        assert available() == before, headers
