"""Upload bodies as a stream under ASGI.

Django's ASGIHandler reads a whole request body into a temporary file before the view runs.
For tus that would write every byte to disk twice and, when the connection drops, lose
everything the PATCH had carried. For the upload paths this handler gives the view a file
object fed from the ASGI server while the view reads it: a task on the event loop receives
ahead into a bounded buffer (so receiving overlaps with the view hashing and writing) and
pauses when the buffer is full, which pauses the server's socket reads (backpressure,
constant memory). Other requests are handled as usual.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import io
import threading
import time

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import UnreadablePostError

from media_api import body_gate

STREAMED_PREFIXES = ("/api/v1/uploads",)
STREAMED_METHODS = {"PATCH", "POST"}
# A client that sends nothing for this long is taken as gone.
RECEIVE_TIMEOUT_SECONDS = 60
# Received bytes held for the view at most (per request).
BUFFER_BYTES = 8 * 1024 * 1024

_body: contextvars.ContextVar[ASGIBodyStream | None] = contextvars.ContextVar("chipmunk_body", default=None)
_body_limit: contextvars.ContextVar[int | None] = contextvars.ContextVar("chipmunk_body_limit", default=None)


class ASGIBodyStream(io.RawIOBase):
    """A request body read by a view running in a worker thread, received by the event loop."""

    def __init__(self, receive, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._receive, self._loop = receive, loop
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._lock = threading.Condition()
        self._state = "open"  # open, done (all received), gone (the client left)
        self._waiting = False  # a read waits for bytes: the event loop wakes it
        self._full = False  # the event loop stopped receiving until the view catches up
        self._room = asyncio.Event()
        self._room.set()
        self._finished = asyncio.Event()
        self._pump: asyncio.Task | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (at least one unless the body is over); blocks while none are here."""
        if size is None or size < 0:
            size = 1 << 62
        parts = self._take(size)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readinto(self, target) -> int:
        """As read, into `target`: the pieces are copied there, not joined into new bytes (a
        caller that reuses its buffers allocates nothing per read)."""
        view = memoryview(target).cast("B")
        filled = 0
        for part in self._take(len(view)):
            view[filled:filled + len(part)] = part
            filled += len(part)
        return filled

    def _take(self, size: int) -> list[bytes]:
        """The next pieces of the body, `size` bytes at most, once they are here."""
        if self._pump is None:
            asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()
        with self._lock:
            waited_since = time.monotonic()
            while not self._buffered and self._state == "open":
                if time.monotonic() - waited_since > RECEIVE_TIMEOUT_SECONDS:
                    self._state = "gone"
                    self._loop.call_soon_threadsafe(self._stop)
                    break
                self._waiting = True
                self._lock.wait(timeout=1)
                self._waiting = False
            if not self._buffered:
                if self._state == "gone":
                    raise UnreadablePostError("the client went away in the middle of the body")
                return []
            parts, taken = [], 0
            while self._chunks and taken < size:
                chunk = self._chunks.popleft()
                if taken + len(chunk) > size:
                    self._chunks.appendleft(chunk[size - taken:])
                    chunk = chunk[: size - taken]
                parts.append(chunk)
                taken += len(chunk)
            self._buffered -= taken
            if self._full and self._buffered < BUFFER_BYTES // 2:
                self._full = False
                self._loop.call_soon_threadsafe(self._room.set)
        return parts

    async def _start(self) -> None:
        if self._pump is None:
            self._pump = asyncio.ensure_future(self._receive_all())

    def _stop(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        self._finished.set()

    async def _receive_all(self) -> None:
        try:
            while True:
                await self._room.wait()
                message = await self._receive()
                with self._lock:
                    if message["type"] == "http.disconnect":
                        self._state = "gone"
                    else:
                        chunk = message.get("body", b"")
                        if chunk:
                            self._chunks.append(chunk)
                            self._buffered += len(chunk)
                        if not message.get("more_body", False):
                            self._state = "done"
                        elif self._buffered >= BUFFER_BYTES:
                            self._full = True
                            self._room.clear()
                    if self._waiting:
                        self._lock.notify_all()
                    if self._state != "open":
                        break
        finally:
            self._finished.set()

    def close(self) -> None:
        if self._pump is not None and not self._pump.done():
            self._loop.call_soon_threadsafe(self._pump.cancel)
        super().close()

    async def receive_after_body(self):
        """What Django's disconnect listener gets: nothing until the view has the whole body.

        A client that left mid-body is not reported: the view keeps what arrived and
        finishes normally (its response goes nowhere).
        """
        if self._pump is None:
            await self._start()  # a view that never reads the body must not stall the listener
        await self._finished.wait()
        if self._state == "gone":
            await asyncio.Event().wait()
        return await self._receive()


def body_of(request):
    """What a view reads an upload body from: our stream under ASGI (it can fill the caller's
    buffers), else the Django request itself."""
    stream = getattr(request, "_stream", None)
    return stream if isinstance(stream, ASGIBodyStream) else request


class StreamingUploadASGIHandler(ASGIHandler):
    """Upload bodies streamed (tus), and refused before they are read (media_api.body_gate)."""

    async def handle(self, scope, receive, send):
        limit_token = None
        if body_gate.applies(scope):
            verdict = await sync_to_async(body_gate.gate_check, thread_sensitive=True)(scope)
            if verdict.refusal is not None:
                await self.send_response(verdict.refusal, send)
                return
            limit_token = _body_limit.set(verdict.max_body)
        try:
            if scope["method"] in STREAMED_METHODS and scope["path"].startswith(STREAMED_PREFIXES):
                stream = ASGIBodyStream(receive, asyncio.get_running_loop())
                token = _body.set(stream)
                try:
                    return await super().handle(scope, stream.receive_after_body, send)
                finally:
                    _body.reset(token)
            return await super().handle(scope, receive, send)
        except body_gate.BodyTooLarge as exc:  # raised by read_body: nothing was sent yet
            await self.send_response(body_gate.too_large(scope["path"], exc.limit), send)
        finally:
            if limit_token is not None:
                _body_limit.reset(limit_token)

    async def read_body(self, receive):
        stream = _body.get()
        if stream is not None:
            return stream
        limit = _body_limit.get()
        if limit is None:
            return await super().read_body(receive)
        received = 0

        async def receive_counted():
            # A body without a Content-Length: stop receiving once it is past the limit.
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise body_gate.BodyTooLarge(limit)
            return message

        return await super().read_body(receive_counted)
