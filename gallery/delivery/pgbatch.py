"""The express lane's reads on PostgreSQL: on the event loop, the lookups of concurrent requests
sent together as one prepared query.

In a delivery thread each thumbnail cost ~0.75 ms of the web process's CPU: the hop to the
thread and back, a checkout from psycopg's pool, two or three queries through Django's cursor.
Here the lane (gallery.delivery.express) asks from the event loop, on connections of its own
from psycopg's AsyncConnectionPool (at most LANE_CONNECTIONS, so a few per web process), and
what the requests of one turn of the loop ask is sent as one statement:

    SELECT ... FROM unnest(<prefixes>, <session keys>, <user ids>, <tokens>, <levels>) AS ask
    LEFT JOIN LATERAL (<the key by its prefix, with its user's is_active>) k ON true
    LEFT JOIN LATERAL (<the session by its key, unexpired>) s ON true
    LEFT JOIN LATERAL (<the user: password, is_active>) u ON true
    LEFT JOIN LATERAL (<the variant through the visibility rule, for the key's or the session's user>) v ON true

Each lateral is the express lane's own query, compiled once by the ORM (CompiledQuery), with
its arguments replaced by the columns of `ask`: the visibility rule is still not written
again. While a statement is out, the requests that arrive wait for the next one, so under 32
connections one query serves a dozen requests or more; alone, a request waits for nothing.

Nothing that decides access is cached. Each request's decision is made in Python on the rows
of its own statement, read after the request arrived, as express.Express decides it: the
key's secret, scopes and recorded use; the session's data (its user and auth hash) against
the user's row. A session's user id is inside its signed data, so the statement looks the
user and the variant up for the user id this session's data named last time (a hint, kept
by session key); when the fresh data names another user (or the session is new here), a
second statement asks again for that user. So a logout, a revoked key, a changed password,
a rotated token or a trashed media count with the next request, in every process.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from concurrent.futures import Executor
from datetime import UTC, datetime

from django.db import DEFAULT_DB_ALIAS, connections

from gallery.compiled import CompiledQuery
from gallery.delivery.express import (
    EXPRESS_MAX_BYTES,
    INLINE_MAX_BYTES,
    Answer,
    Ask,
    Express,
    key_holder,
    key_prefix,
)

log = logging.getLogger(__name__)

# Statements out at once (each on its own connection); more requests wait for the next batch.
LANE_CONNECTIONS = 2
MAX_BATCH = 128
_HINT_LIMIT = 4096
# Every connection the lane opened in this process, to close them without an event loop.
_OPENED: weakref.WeakSet = weakref.WeakSet()


class _Now:
    """The one parameter of the statement that is not a column of `ask`: the time, for sessions."""


NOW = _Now()
# Columns of a result row: the ask's number, then the key, the session, the user and the variant.
KEY, SESSION, USER, VARIANT = slice(1, 6), 6, slice(7, 9), slice(9, 13)


def batch_statement(queries: dict[str, CompiledQuery]) -> tuple[str, list]:
    """The lane's four queries as laterals of one statement over arrays of asks; its parameters
    are the five arrays, then (in order) NOW and the queries' constants."""
    key_sql, key_params = queries["api_key"].inlined(("ask.prefix",))
    session_sql, session_params = queries["session"].inlined(("ask.session_key", NOW))
    user_sql, user_params = queries["user"].inlined(("ask.user_id",))
    owner = "(CASE WHEN ask.prefix IS NULL THEN ask.user_id ELSE k.user_id END)"
    variant_sql, variant_params = queries["variant"].inlined((owner, "ask.token", "ask.level"))
    sql = ("SELECT ask.i, k.*, s.*, u.*, v.* FROM unnest(%s::text[], %s::text[], %s::uuid[], %s::text[], %s::text[])"
           " WITH ORDINALITY AS ask (prefix, session_key, user_id, token, level, i)"
           f" LEFT JOIN LATERAL ({key_sql}) AS k (hashed, scopes, last_used, user_id, active) ON true"
           f" LEFT JOIN LATERAL ({session_sql}) AS s (data) ON true"
           f" LEFT JOIN LATERAL ({user_sql}) AS u (password, active) ON true"
           f" LEFT JOIN LATERAL ({variant_sql}) AS v (storage_key, size, content_type, created_at) ON true")
    return sql, [*key_params, *session_params, *user_params, *variant_params]


def close_all() -> None:
    """Close every connection the lane opened in this process, with or without a running loop
    (the test database is dropped after the tests' event loops are gone)."""
    for connection in list(_OPENED):
        if not connection.closed:
            connection.pgconn.finish()


async def _close_at_the_end(pool) -> None:
    """Close the pool when its event loop cancels its tasks, as it ends (uvicorn's shutdown,
    asyncio.run): a pool's worker that is connecting when cancelled carries on and waits for
    work for ever, so a loop left with an open pool never finishes."""
    try:
        await asyncio.get_running_loop().create_future()
    except asyncio.CancelledError:
        await pool.close(timeout=2)
        raise


class Batches:
    """The lane's lookups on PostgreSQL, batched; `answer` is Express.answer_here's counterpart."""

    def __init__(self, express: Express, executor: Executor) -> None:
        self.express = express
        self.executor = executor  # the lean door's threads: the first request, larger files
        self.statement: tuple[str, list] | None = None
        self.hints: dict[str, uuid.UUID] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def answer(self, ask: Ask) -> Answer | None:
        """(headers, body) of the 200, or None for the lean door to answer."""
        loop = asyncio.get_running_loop()
        if self.statement is None:
            # The first request compiles the queries with the ORM, in a thread, and is answered there.
            answer = await loop.run_in_executor(self.executor, self.express.answer, ask)
            if self.statement is None and self.express._compiled:
                self.statement = batch_statement(self.express._compiled)
            return answer
        extra = self.express._middleware_headers.get(ask.secure)
        if extra is None:
            return None
        try:
            target = await (self._key_target(ask) if ask.api_key else self._session_target(ask))
            if target is None:
                return None
            if ask.head or target[1] <= INLINE_MAX_BYTES:  # read here, from the page cache
                return self.express.respond(ask, target, extra, EXPRESS_MAX_BYTES)
            return await loop.run_in_executor(self.executor, self.express.respond, ask, target, extra,
                                              EXPRESS_MAX_BYTES)
        except Exception:  # a failed read or lookup: the lean door answers, as it would have
            log.debug("express lane: handing over to the lean door", exc_info=True)
            return None

    async def _key_target(self, ask: Ask) -> tuple | None:
        prefix = key_prefix(ask.api_key)
        if prefix is None:
            return None
        row = await self._lookup((prefix, None, None, ask.token, ask.level))
        if key_holder(ask.api_key, *row[KEY]) is None:
            return None
        return self.express.target(row[VARIANT]) if row[VARIANT][0] else None

    async def _session_target(self, ask: Ask) -> tuple | None:
        hint = self.hints.get(ask.session_key)
        row = await self._lookup((None, ask.session_key, hint, ask.token, ask.level))
        claims = self.express.session_claims(row[SESSION]) if row[SESSION] is not None else None
        if claims is None:
            return None
        if claims[0] != hint:  # new here, or the session now names another user: ask for that one
            if len(self.hints) >= _HINT_LIMIT:
                self.hints.clear()
            self.hints[ask.session_key] = claims[0]
            row = await self._lookup((None, ask.session_key, claims[0], ask.token, ask.level))
            again = self.express.session_claims(row[SESSION]) if row[SESSION] is not None else None
            if again != claims:
                return None
        if not self.express.session_holds(claims, *row[USER]):
            return None
        return self.express.target(row[VARIANT]) if row[VARIANT][0] else None

    # --- Batching ------------------------------------------------------------------------------
    def _lookup(self, values: tuple) -> asyncio.Future:
        """The result row for one ask (prefix, session key, user id, token, level), from the next
        statement sent."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._start(loop)
        future = loop.create_future()
        self._pending.append((values, future))
        if not self._scheduled and self._out < LANE_CONNECTIONS:
            self._scheduled = True
            loop.call_soon(self._send)  # after the other requests of this turn of the loop have asked
        return future

    def _send(self) -> None:
        self._scheduled = False
        while self._pending and self._out < LANE_CONNECTIONS:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            self._out += 1
            task = self._loop.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[tuple, asyncio.Future]]) -> None:
        try:
            rows = await self._query([values for values, _ in batch])
        except Exception as exc:
            log.debug("express lane: a batch of lookups failed", exc_info=True)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for row in rows:
                future = batch[row[0] - 1][1]
                if not future.done():
                    future.set_result(row)
            for _, future in batch:  # one row per ask, always (left joins): never left waiting
                if not future.done():
                    future.set_exception(LookupError("no row for this ask"))
        finally:
            self._out -= 1
            if self._pending and not self._scheduled:
                self._send()

    async def _query(self, asks: list[tuple]) -> list[tuple]:
        await self._opening
        sql, params = self.statement
        now = datetime.now(UTC)
        arrays = [list(column) for column in zip(*asks)]
        async with self._pool.connection() as connection:
            cursor = connection.cursor(binary=True)
            await cursor.execute(sql, [*arrays, *(now if p is NOW else p for p in params)], prepare=True)
            return await cursor.fetchall()

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        """A pool on this event loop. There is one loop per process when serving; tests run one
        per test, and the connections of a finished loop are closed here."""
        from psycopg_pool import AsyncConnectionPool

        if self._loop is not None:
            for connection in list(self._opened):
                if not connection.closed:
                    connection.pgconn.finish()
        kwargs = connections[DEFAULT_DB_ALIAS].get_connection_params()
        for name in ("cursor_factory", "context", "prepare_threshold"):  # Django's, for its own cursors
            kwargs.pop(name, None)
        self._opened: weakref.WeakSet = weakref.WeakSet()
        self._pool = AsyncConnectionPool(kwargs={**kwargs, "autocommit": True}, min_size=1, max_size=LANE_CONNECTIONS,
                                         open=False, configure=self._configure, timeout=5, name="express-lane")
        self._opening = loop.create_task(self._pool.open())
        self._closing = loop.create_task(_close_at_the_end(self._pool))
        self._pending: list[tuple[tuple, asyncio.Future]] = []
        self._tasks: set[asyncio.Task] = set()
        self._out, self._scheduled, self._loop = 0, False, loop

    async def _configure(self, connection) -> None:
        self._opened.add(connection)
        _OPENED.add(connection)
