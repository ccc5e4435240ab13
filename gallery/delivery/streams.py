"""The express lane's streams: originals, ranges, conditional requests and larger variants of /m/,
and x-accel answers, decided on plain values and sent without Django's request.

A 1 MiB range of a video through the lean door cost ~1.45 ms of CPU in-process (an
HttpRequest, the middleware, a DRF request and its authenticators, two querysets compiled,
model objects, a thread hop for the view and another for the response's close, the MiB read
into new bytes and cut into 64 KiB messages by Django's sender): the app reached ~0.2x nginx
on random 1 MiB ranges (bench/stream.py), and in x-accel mode, where nginx sends the bytes
and the app only says yes, ~1.3 ms a range held nginx to ~0.2-0.3x. Here: ~0.2 ms, and
~0.03 ms for an x-accel answer.

Here the lane's own decisions (gallery.delivery.express) are taken on plain values: the
credential exactly as the lane checks it (its session and API key reads, afresh for every
request), then the media or variant through the one visibility rule, compiled once by the ORM
(CompiledQuery), never written again. What it answers is what gallery.delivery.views would:
its Target, safe type and common headers, ranges.evaluate's decision (RFC 9110: one range,
conditionals, 304), and the middleware's headers as the lane learned them. The bytes:
- stream mode: read with os.preadv into a buffer of its own, on the event loop when the pages
  are already in memory (RWF_NOWAIT: a read that would wait for the disk refuses instead), else
  in a thread; a chunk of up to 1 MiB per message; a client that leaves stops the reading;
- x-accel mode: the empty answer with X-Accel-Redirect; nginx sends the file and does ranges.
On SQLite the decision runs on the event loop (a read-only connection of its own that never
waits for a lock); on PostgreSQL, or when that connection is busy, in one hop to a delivery
thread, which also reads the first chunk.

A media the library's rule does not show may be a vault item: in a delivery thread, the
credential's unlock (gallery.vault.keys, the key's or the session's with its vault cookie),
the rule widened by it, views' own vault Target and sources: decrypted, never x-accel, in
pieces read ahead (views._in_threads), whatever the mode.

Everything else goes on to the lean door, which answers it: several ranges (multipart), 412 and 416,
anything the lane does not take (provider tokens, anonymous calls, a duplicated header, a
non-ASCII query, a host not allowed, S3, redirect mode), every refusal (so a 404 is always
the full path's own), and any error before the first byte.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent
from django.http import QueryDict
from django.http.cookie import parse_cookie

from gallery.compiled import CompiledQuery, sample_user
from gallery.delivery import ranges, views
from gallery.delivery.express import (
    Ask,
    Express,
    _aware,
    lane_reason_off,
    thread_connection,
    watched_headers,
)
from gallery.delivery.sources import CHUNK_SIZE
from gallery.models import Media, Variant
from gallery.storage import media_storage
from gallery.vault import keys

log = logging.getLogger(__name__)

# The request headers ranges.evaluate reads, by their ASGI (lower-case) names.
CONDITIONS = {b"range": "Range", b"if-range": "If-Range", b"if-match": "If-Match",
              b"if-none-match": "If-None-Match", b"if-modified-since": "If-Modified-Since",
              b"if-unmodified-since": "If-Unmodified-Since"}
_WATCHED = frozenset({b"host", b"cookie", b"authorization", b"x-forwarded-proto", *CONDITIONS})
_CACHE_LIMIT = 4096
# Reads that would wait for the disk refuse instead (Linux >= 4.14), so the loop never waits.
_NOWAIT = getattr(os, "RWF_NOWAIT", None) if hasattr(os, "preadv") else None


@dataclass(frozen=True)
class StreamAsk:
    """A request this lane may answer: the credential as the express lane holds it, and the
    parts of the request that change the answer."""

    ask: Ask
    conditions: dict[str, str]
    download: bool  # ?download=1, as views reads request.GET
    vault_cookie: str | None = None  # a session's vault cookie (gallery.vault.keys.COOKIE)


@dataclass(frozen=True)
class Plan:
    """The answer before its body: status, headers, and the file span to send (length 0: none)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    path: str = ""
    first: int = 0
    length: int = 0
    body: AsyncIterator | None = None  # instead of the file span: a vault item's plaintext


@dataclass(frozen=True)
class InVault:
    """Not in the caller's library: the vault's, if this credential holds it open."""

    user_id: uuid.UUID


def _original_query(user_id, token: str):
    return (Media.objects.visible_to(sample_user(user_id)).filter(token=token).order_by("pk")
            .values_list("original_key", "size", "sha256", "updated_at", "content_type", "original_filename",
                         "status", "in_vault", "owner_id")[:1])


def _variant_query(user_id, token: str, level: str):
    visible = Media.objects.visible_to(sample_user(user_id)).filter(token=token)
    return (Variant.objects.filter(level=level, media__in=visible).order_by("pk")
            .values_list("storage_key", "size", "content_type", "created_at", "media__owner_id")[:1])


def _vault_visible(user_id, token: str):
    # The rule widened by an unlock of this user's vault, as views.find_target asks it (the
    # Unlocked here is only the shape the rule reads: its user; the key is checked before).
    unlock = keys.Unlocked(user_id=user_id, key=b"", until=0)
    return Media.objects.visible_to(sample_user(user_id), vault=unlock).filter(in_vault=True, token=token)


def _vault_original_query(user_id, token: str):
    # views.vault_original_target's columns, in its order.
    return (_vault_visible(user_id, token).order_by("pk")
            .values_list("pk", "owner_id", "original_key", "size", "updated_at", "status",
                         "vault_item__wrapped_key", "vault_item__sealed")[:1])


def _vault_variant_query(user_id, token: str, level: str):
    # views.vault_variant_target's columns, in its order.
    return (Variant.objects.filter(level=level, media__in=_vault_visible(user_id, token)).order_by("pk")
            .values_list("media_id", "media__owner_id", "media__vault_item__wrapped_key", "storage_key", "size",
                         "created_at", "content_type", "level")[:1])


class StreamLane:
    """`serve` answers a request and returns True, or returns False having sent nothing."""

    def __init__(self, express: Express, pool) -> None:
        self.express, self.pool = express, pool  # the lane (credential checks), the delivery threads
        self.mode = settings.DELIVERY_MODE
        self.reason_off = self._reason_off()
        if self.reason_off:
            log.info("stream lane for /m/ off: %s", self.reason_off)
        self._compiled: dict[str, CompiledQuery] | None = None
        self._lock = threading.Lock()
        self._descriptions: dict[tuple, tuple[views.Target, list]] = {}
        self.nowait = _NOWAIT is not None

    @staticmethod
    def _reason_off() -> str:
        # As the express lane's, with x-accel too: only the bytes differ.
        return lane_reason_off(("stream", "x-accel"))

    # --- On the event loop: is this a request for the lane? ---------------------------------
    def ask(self, scope: dict, token: str, level: str) -> StreamAsk | None:
        """The express lane's parsing (express.Express.ask), taking Range and conditionals."""
        if settings.DELIVERY_MODE != self.mode:  # changed by a test: decide again
            self.mode, self.reason_off = settings.DELIVERY_MODE, self._reason_off()
        if self.reason_off:
            return None
        query = scope.get("query_string", b"")
        if query and not query.isascii():
            return None
        found = watched_headers(scope, _WATCHED)
        ask = None if found is None else self.express.credential(scope, found, token, level)
        if ask is None:
            return None
        conditions = {CONDITIONS[name]: value.decode("latin-1") for name, value in found.items() if name in CONDITIONS}
        try:
            download = bool(query) and level == views.ORIGINAL_LEVEL and QueryDict(query).get("download") == "1"
        except TooManyFieldsSent:  # the lean door answers it as Django does (400)
            return None
        vault_cookie = None
        if ask.session_key is not None:
            vault_cookie = parse_cookie(found[b"cookie"].decode("latin-1")).get(keys.COOKIE)
        return StreamAsk(ask, conditions, download, vault_cookie)

    # --- Serving ------------------------------------------------------------------------------
    async def serve(self, scope: dict, token: str, level: str, receive, send) -> bool:
        """Answer this request (True), or leave it to the lean door having sent nothing (False)."""
        ask = self.ask(scope, token, level)
        if ask is None:
            return False
        fd = -1
        try:
            try:
                decided, plan = self._plan_here(ask)
                head = None
                loop = asyncio.get_running_loop()
                if not decided:
                    plan, head = await loop.run_in_executor(self.pool, self._plan_in_thread, ask) or (None, None)
                elif isinstance(plan, InVault):
                    plan = await loop.run_in_executor(self.pool, self._vault_plan, ask, plan.user_id)
                if plan is None:
                    return False
                if plan.body is None and plan.length and (head is None or len(head) < plan.length):
                    fd = os.open(plan.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                if plan.body is None and plan.length and head is None:
                    head = await self._read(fd, plan.first, min(CHUNK_SIZE, plan.length))
            except Exception:
                log.debug("stream lane: handing over to the lean door", exc_info=True)
                return False
            if plan.body is not None:
                await _send_pieces(plan, receive, send)
                return True
            await send({"type": "http.response.start", "status": plan.status, "headers": plan.headers})
            await self._send_body(fd, plan, head, receive, send)
            return True
        finally:
            if fd >= 0:
                os.close(fd)

    def _plan_here(self, ask: StreamAsk) -> tuple[bool, Plan | None]:
        """On SQLite, (True, the plan or None for the lean door) decided on the event loop, or
        (False, None) to decide in a delivery thread (PostgreSQL, not compiled yet, busy)."""
        queries, lane = self._compiled, self.express._compiled
        extra = self.express._middleware_headers.get(ask.ask.secure)
        if not self.express.inline or not queries or not lane or extra is None:
            return False, None
        try:
            connection = self.express.loop_connection()
            plan = self._plan(lambda name, *args: (queries.get(name) or lane[name]).rows_here(connection, *args),
                              ask, extra)
        except Exception:
            log.debug("stream lane: deciding in a delivery thread", exc_info=True)
            self.express.drop_loop_connection()
            return False, None
        return True, plan

    def _plan_in_thread(self, ask: StreamAsk) -> tuple[Plan, bytearray | None] | None:
        """The plan on the thread's database connection, with the body's first chunk (one hop for
        both); None for the lean door."""
        try:
            with thread_connection() as connection:
                lane, queries = self.express._queries(), self._queries()
                extra = self.express._middleware(ask.ask.secure)
                if lane is None or queries is None or extra is None:
                    return None
                with connection.cursor() as cursor:
                    plan = self._plan(lambda name, *args: (queries.get(name) or lane[name]).rows(cursor, *args),
                                      ask, extra)
            if isinstance(plan, InVault):
                plan = self._vault_plan(ask, plan.user_id)
            if plan is None or not plan.length or plan.body is not None:
                return (plan, None) if plan is not None else None
            fd = os.open(plan.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                head = bytearray(min(CHUNK_SIZE, plan.length))
                if _fill(fd, head, 0, plan.first) < len(head):
                    return None  # shorter than recorded: the lean door's to answer
            finally:
                os.close(fd)
            return plan, head
        except Exception:
            log.debug("stream lane: handing over to the lean door", exc_info=True)
            return None

    def _queries(self) -> dict[str, CompiledQuery] | None:
        if self._compiled is None:
            with self._lock:
                if self._compiled is None:
                    users = (uuid.UUID(int=1), uuid.UUID(int=2))
                    try:
                        self._compiled = {
                            "original": CompiledQuery(_original_query, ((users[0], "tokenA"), (users[1], "tokenB"))),
                            "stream_variant": CompiledQuery(_variant_query, ((users[0], "tokenA", "lA"),
                                                                             (users[1], "tokenB", "lB"))),
                            "vault_original": CompiledQuery(_vault_original_query, ((users[0], "tokenA"),
                                                                                    (users[1], "tokenB")),
                                                            convert=True),
                            "vault_variant": CompiledQuery(_vault_variant_query, ((users[0], "tokenA", "lA"),
                                                                                  (users[1], "tokenB", "lB")),
                                                           convert=True),
                        }
                    except Exception as exc:
                        self.reason_off = f"the visibility rule cannot be compiled to one query ({exc!r})"
                        log.warning("stream lane for /m/ off: %s", self.reason_off, exc_info=True)
                        self._compiled = {}
        return self._compiled or None

    # --- Deciding: the same answer as views.serve_media ---------------------------------------
    def _plan(self, rows, ask: StreamAsk, extra: list[tuple[bytes, bytes]]) -> Plan | InVault | None:
        a = ask.ask
        user_id = self.express._api_key_user(rows, a.api_key) if a.api_key else \
            self.express._session_user(rows, a.session_key)
        if user_id is None:
            return None
        if a.level == views.ORIGINAL_LEVEL:
            found = rows("original", user_id, a.token)
        else:
            found = rows("stream_variant", user_id, a.token, a.level)
        if not found:
            return InVault(user_id)
        described = self._described(found[0], a.level, ask.download) if found else None
        if described is None:
            return None
        target, headers = described
        path = first = length = 0
        status = 200
        if self.mode != "x-accel":  # in x-accel mode nginx answers Range and conditionals itself
            decision = ranges.evaluate("HEAD" if a.head else "GET", ask.conditions, target.rep)
            if decision.status not in (200, 206, 304) or decision.multipart:
                return None  # 412, 416 and multipart/byteranges: the lean door's
            status = decision.status
            headers = headers + [(name.encode("latin-1"), value.encode("latin-1"))
                                 for name, value in decision.headers.items()]
            if not a.head and decision.ranges:
                first, last = decision.ranges[0]
                path, length = media_storage().path(target.key), last - first + 1
        headers = headers + extra
        if a.api_key is None:
            headers.append((b"Vary", b"Cookie"))
        return Plan(status, headers, path, first, length)

    def _vault_plan(self, ask: StreamAsk, user_id: uuid.UUID) -> Plan | None:
        """In a delivery thread: a vault item's answer, as views.find_target and _serve decide it
        (the credential's unlock, the rule widened by it, views' own Target), its body decrypted
        by views' sources in pieces read ahead; None for the lean door (locked, not found,
        412, 416, several ranges, an error)."""
        a = ask.ask
        if a.api_key is not None:
            credential = keys.credential_from(bearer=a.api_key)
        else:
            credential = keys.credential_from(session_key=a.session_key, cookie=ask.vault_cookie)
        try:
            with thread_connection() as connection:
                extra, queries = self.express._middleware(a.secure), self._queries()
                unlock = keys.unlocked(user_id=user_id, credential=credential)
                if extra is None or unlock is None or queries is None:
                    return None
                original = a.level == views.ORIGINAL_LEVEL
                query = queries["vault_original" if original else "vault_variant"]
                with connection.cursor() as cursor:
                    found = query.rows(cursor, user_id, a.token) if original else \
                        query.rows(cursor, user_id, a.token, a.level)
            if not found:
                return None
            row = query.converted(found)[0]
            target = views.vault_original_target(unlock, *row) if original else views.vault_variant_target(unlock, *row)
            if target is None:
                return None
            target = views._with_safe_type(target)
            decision = ranges.evaluate("HEAD" if a.head else "GET", ask.conditions, target.rep)
            if decision.status not in (200, 206, 304) or decision.multipart:
                return None
            headers = {**views._common_headers(target, ask.download and target.filename is not None),
                       **decision.headers}
            encoded = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()] + extra
            if a.api_key is None:
                encoded.append((b"Vary", b"Cookie"))
            if a.head or decision.status == 304:
                return Plan(decision.status, encoded)
            length = int(decision.headers["Content-Length"])
            chunks = views.target_chunks(media_storage(), target, decision)
            return Plan(decision.status, encoded, length=length, body=views._in_threads(chunks, length))
        except Exception:
            log.debug("stream lane: a vault item handed over to the lean door", exc_info=True)
            return None

    def _described(self, row: tuple, level: str, download: bool) -> tuple[views.Target, list] | None:
        """views' Target of the row the visibility rule found (with its safe type) and the
        headers that do not depend on the request's conditions; None: the lean door decides.
        A row's values are all it depends on (and the mode), so it is cached by them."""
        cache_key = (row, level == views.ORIGINAL_LEVEL, download, self.mode)
        cached = self._descriptions.get(cache_key)
        if cached is not None:
            return cached
        if level == views.ORIGINAL_LEVEL:
            key, size, sha256, updated_at, content_type, filename, status, in_vault, owner_id = row
            if not key or status == Media.Status.UPLOADING or in_vault:
                return None
            etag = sha256[:32] if sha256 else views._key_digest(key, size)
            rep = ranges.Representation(size=size, etag=f'"{etag}"', last_modified=_aware(updated_at),
                                        content_type=content_type or "application/octet-stream")
        else:
            key, size, content_type, created_at, owner_id = row
            if not key:
                return None
            filename = None
            rep = ranges.Representation(size=size, etag=f'"{views._key_digest(key, size)}"',
                                        last_modified=_aware(created_at), content_type=content_type)
        target = views._with_safe_type(views.Target(key, str(owner_id), rep, filename, self.mode))
        headers = views._common_headers(target, download and filename is not None)
        if self.mode == "x-accel":
            headers = {"Content-Type": target.rep.content_type,
                       "X-Accel-Redirect": settings.DELIVERY_ACCEL_PREFIX + quote(target.key, safe="/"),
                       "Content-Length": "0", **headers}
        described = (target, [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()])
        if len(self._descriptions) >= _CACHE_LIMIT:
            self._descriptions.clear()
        self._descriptions[cache_key] = described
        return described

    # --- The body ---------------------------------------------------------------------------
    async def _read(self, fd: int, offset: int, length: int) -> bytearray:
        """`length` bytes at `offset`: on the loop when they are in the page cache, else in a thread."""
        buffer, got = bytearray(length), 0
        if self.nowait:
            try:
                got = os.preadv(fd, [buffer], offset, _NOWAIT)
            except BlockingIOError:
                got = 0
            except OSError:  # a file system without RWF_NOWAIT: always in a thread
                self.nowait = False
        if got < length:
            got = await asyncio.get_running_loop().run_in_executor(views._io_pool, _fill, fd, buffer, got, offset)
        if got < length:
            # The headers promised more: stop short so the server drops the connection.
            raise OSError(f"{fd}: the file is shorter than recorded ({length - got} bytes missing)")
        return buffer

    async def _send_body(self, fd: int, plan: Plan, head: bytearray, receive, send) -> None:
        if not plan.length:
            await send({"type": "http.response.body", "body": b""})
            return
        offset, remaining, chunk = plan.first, plan.length, head
        watch = None
        try:
            while True:
                remaining -= len(chunk)
                offset += len(chunk)
                if remaining and watch is None:
                    watch = asyncio.ensure_future(_until_disconnect(receive))
                # uvicorn writes any bytes-like body; the buffer is never reused.
                await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
                if not remaining:
                    return
                # Reads from the page cache and a fast client never wait: let the loop serve
                # the others (and the watch hear a disconnect) between chunks.
                await asyncio.sleep(0)
                if watch.done():
                    return  # the client left
                chunk = await self._read(fd, offset, min(CHUNK_SIZE, remaining))
        finally:
            if watch is not None:
                watch.cancel()


def _fill(fd: int, buffer: bytearray, got: int, offset: int) -> int:
    """Read into buffer[got:] from offset + got until it is full or the file ends; the count."""
    view = memoryview(buffer)
    while got < len(buffer):
        count = os.preadv(fd, [view[got:]], offset + got)
        if count == 0:
            break
        got += count
    return got


async def _until_disconnect(receive) -> None:
    # A GET's first message is its (empty) body; then uvicorn answers when the client leaves.
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send_pieces(plan: Plan, receive, send) -> None:
    """A plan whose body comes as pieces (views._in_threads): each in one message; a client
    that leaves stops it (its reading ends when the iterator is closed)."""
    watch = None
    try:
        await send({"type": "http.response.start", "status": plan.status, "headers": plan.headers})
        watch = asyncio.ensure_future(_until_disconnect(receive))
        async for piece in plan.body:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            if watch.done():
                return  # the client left
        await send({"type": "http.response.body", "body": b""})
    finally:
        if watch is not None:
            watch.cancel()
        await plan.body.aclose()
