"""The lean door for /m/: Django's request, middleware and view, without the per-request thread.

Under Django's ASGIHandler every request gets a thread of its own for its synchronous work
(ThreadSensitiveContext), so a database connection can never outlive a request: each
thumbnail paid for a new thread, a new SQLite connection with its PRAGMAs (or a pool
checkout), the request_started/finished signals and the eleven middlewares. A screen of
thumbnails is a hundred such requests.

This ASGI app serves GET and HEAD of /m/<token>/<level>/ with the same parts, fewer of them:
- the same view (gallery.delivery.views.serve_media), so the same authentication classes
  (gallery.auth) and the same visibility rule decide, per request, with nothing cached:
  a rotated token, a trashed media, a revoked key or a logout count at once everywhere;
- the middlewares /m/ needs, in settings.MIDDLEWARE's order (proxy headers, security
  headers, sessions, authentication, Secure cookies, X-Frame-Options); it leaves out the
  ones for pages and forms (static files, CommonMiddleware, CSRF, messages);
- two hops from the event loop into a fixed pool of DELIVERY_THREADS threads (the response,
  then its close), whose database connections persist between requests (closed when they
  fail, as close_old_connections does);
- Django's own ASGI response sending (streamed bodies, async iterators).
Before any of that, the express lane (gallery.delivery.express) is offered the request: a
plain GET/HEAD of a small variant with a session or an API key is decided on plain values
(the same checks, the visibility rule compiled once by the ORM) and answered in one message,
from the event loop itself (on PostgreSQL, the lookups of concurrent requests batched into one
query: gallery.delivery.pgbatch), or with DELIVERY_INLINE=false in one hop; whatever it does
not answer, refusals included, continues here. config.asgi sends GET/HEAD of the media list
here too (no express lane: the same chain and pool); anything else goes to the full Django
application.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.core.handlers.exception import convert_exception_to_response
from django.db import connections
from django.http import HttpRequest, HttpResponseBadRequest, HttpResponseBase
from django.urls import resolve, set_urlconf
from django.utils.module_loading import import_string

from gallery.delivery.express import Express
from gallery.delivery.pgbatch import Batches
from gallery.delivery.streams import StreamLane

log = logging.getLogger(__name__)

PREFIX = "/m/"
# Middlewares for pages and forms, not for bytes behind a token.
SKIPPED_MIDDLEWARE = {
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
}
_PATH = re.compile(r"^/m/(?P<token>[A-Za-z0-9_-]{1,64})/(?P<level>[0-9a-z]{1,8})/$")


def handles(scope: dict) -> bool:
    """Whether this door serves the request: GET or HEAD of a delivery URL."""
    return scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and bool(_PATH.match(scope["path"]))


def _view(request: HttpRequest) -> HttpResponseBase:
    request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware checks it on the full stack (400)
    match = resolve(request.path_info)
    request.resolver_match = match
    response = match.func(request, *match.args, **match.kwargs)
    if callable(getattr(response, "render", None)):
        # DRF's Response (the media list), rendered as Django's handler does, with the
        # Content-Length that CommonMiddleware would add.
        response = response.render()
        if not response.has_header("Content-Length"):
            response.headers["Content-Length"] = str(len(response.content))
    return response


def build_chain(view=_view):
    """settings.MIDDLEWARE less SKIPPED_MIDDLEWARE around the view, built as Django builds it."""
    handler = convert_exception_to_response(view)
    for path in reversed(settings.MIDDLEWARE):
        if path not in SKIPPED_MIDDLEWARE:
            handler = convert_exception_to_response(import_string(path)(handler))
    return handler


class _Sender(ASGIHandler):
    """Only for Django's send_response (headers, cookies, streamed and async bodies).

    A streamed piece (at most sources.CHUNK_SIZE, 1 MiB) goes out in one message, not cut
    into Django's 64 KiB ones: slicing bytes copies them."""

    chunk_size = 4 * 1024 * 1024

    def load_middleware(self, is_async: bool = False) -> None:
        pass


class DeliveryApp:
    """ASGI app for GET/HEAD /m/...; see the module's docstring."""

    def __init__(self, threads: int | None = None) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads or settings.DELIVERY_THREADS,
                                       thread_name_prefix="delivery-fast")
        self.chain = build_chain()
        self.sender = _Sender()
        self.express = Express(chain_for=build_chain)
        # PostgreSQL: the lane's reads on the event loop, batched (DELIVERY_INLINE=false: in a thread).
        self.batches = Batches(self.express, self.pool) if self.express.batched else None
        self.streams = StreamLane(self.express, self.pool)

    async def __call__(self, scope: dict, receive, send) -> None:
        match = _PATH.match(scope["path"])
        ask = self.express.ask(scope, match["token"], match["level"]) if match else None
        if ask is not None:
            if self.batches is not None:
                answer = await self.batches.answer(ask)
            else:
                answer = self.express.answer_here(ask)
                if answer is None:
                    answer = await asyncio.get_running_loop().run_in_executor(self.pool, self.express.answer, ask)
            if answer is not None:
                headers, body = answer
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        # Originals, ranges, conditionals, larger variants, x-accel: the lane's streams.
        if match and await self.streams.serve(scope, match["token"], match["level"], receive, send):
            return
        # GET and HEAD carry no body worth reading.
        try:
            request = ASGIRequest(scope, io.BytesIO(b""))
        except UnicodeDecodeError:  # a query string that is not UTF-8, as Django's handler answers it
            response = HttpResponseBadRequest()
        else:
            response = await asyncio.get_running_loop().run_in_executor(self.pool, self._respond, request)
        try:
            await self.sender.send_response(response, send)
        finally:
            # request_finished runs in the thread that used the connections, as under
            # Django's handler (close_old_connections: see _persist_connections).
            await asyncio.get_running_loop().run_in_executor(self.pool, response.close)

    def _respond(self, request: HttpRequest) -> HttpResponseBase:
        set_urlconf(settings.ROOT_URLCONF)
        try:
            return self.chain(request)
        finally:
            _persist_connections()


def _persist_connections() -> None:
    """Let this thread's connections outlive the request: what CONN_MAX_AGE=None does, for
    these threads only. close_old_connections (request_finished) still closes one that failed
    or was left outside autocommit. A connection from psycopg's pool (DATABASE_POOL) keeps
    its age limit and goes back to the pool: held by a thread it would starve the process."""
    for conn in connections.all(initialized_only=True):
        if getattr(conn, "pool", None) is None:
            conn.close_at = None
        elif conn.connection is not None and not conn.in_atomic_block:
            # Back to the pool now: the close hop may land on another of the pool's threads,
            # and this one would hold the connection until its next request.
            conn.close()
