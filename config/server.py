"""How uvicorn serves Chipmunk: the options of `manage.py run`, and a header size limit.

uvicorn's httptools protocol (the fast one, chosen by default) reads request headers of any
size: a 64 MB header was held in memory whole. HeaderLimitedHttpToolsProtocol counts the
bytes of a request line and headers as they arrive and answers 431 and closes once they pass
MAX_REQUEST_HEADER_SIZE. Only `uvicorn_options()` knows uvicorn's knobs; `manage.py run` and
the tests start servers with it. No Django models here: uvicorn imports this before the app.

It also hands request bodies on with fewer copies and fewer pauses (a tus PATCH of 1 GiB is
some 7,000 socket reads): uvicorn appends each piece the parser gives to a bytearray and
copies that into bytes for the app, two copies of every byte on the event loop, and pauses
reading the socket once 64 KiB wait, which with 256 KiB reads is after every read (a pause
and a resume are two epoll changes). Here a piece the app has not yet been handed is passed
on as it is, pieces are joined only when the app falls behind, and reading pauses once
BODY_HIGH_WATER bytes wait: memory per connection stays bounded, and the app's own buffer
(media_api.streaming) still pauses the socket when the view falls behind.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PROTOCOL = "config.server:HeaderLimitedHttpToolsProtocol"
# The page sends nothing over its websocket: a big frame is never legitimate.
WEBSOCKET_MAX_MESSAGE = 64 * 1024
# Request body bytes uvicorn holds for the app before it stops reading the socket.
BODY_HIGH_WATER = 1024 * 1024


class HeadersTooLarge(Exception):
    """Raised in the parser's callback to stop it; httptools hands it back as HttpParserError."""


class HeaderLimitedHttpToolsProtocol(HttpToolsProtocol):
    """httptools, refusing a request whose line and headers pass MAX_REQUEST_HEADER_SIZE.

    Bytes are counted per chunk read from the socket while a request's headers are still
    incomplete, so the most held is the limit plus one read (256 KiB); headers that arrive
    whole in one read are measured when they are complete, before the app sees them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_header_bytes = settings.MAX_REQUEST_HEADER_SIZE
        self.header_bytes = 0
        self.in_headers = True

    def data_received(self, data: bytes) -> None:
        if self.in_headers:
            self.header_bytes += len(data)
        super().data_received(data)
        if self.in_headers and self.header_bytes > self.max_header_bytes and not self.transport.is_closing():
            self.refuse_header_too_large()

    def on_headers_complete(self) -> None:
        self.in_headers = False
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_header_bytes:
            self.refuse_header_too_large()
            raise HeadersTooLarge
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_headers, self.header_bytes = True, 0

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle.response_complete or (self.parser.should_upgrade() and self._should_upgrade()):
            return
        if not cycle.body:
            cycle.body = body  # receive() hands bytes on as they are: bytes(body) is body
        else:
            if not isinstance(cycle.body, bytearray):
                cycle.body = bytearray(cycle.body)
            cycle.body += body
        if len(cycle.body) > BODY_HIGH_WATER:
            self.flow.pause_reading()
        cycle.message_event.set()

    def send_400_response(self, msg: str) -> None:
        if not self.transport.is_closing():  # after a 431 the parser's error needs no answer
            super().send_400_response(msg)

    def refuse_header_too_large(self) -> None:
        self.logger.warning("Request headers over %d bytes refused.", self.max_header_bytes)
        if self.cycle is None or self.cycle.response_complete:
            # Otherwise a pipelined response is being written: closing is all that is left.
            body = b"Request header fields too large.\n"
            self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                                 b"content-type: text/plain; charset=utf-8\r\n"
                                 b"content-length: " + str(len(body)).encode() + b"\r\n"
                                 b"connection: close\r\n\r\n" + body)
        self.transport.close()


def uvicorn_options(*, host: str, port: int, workers: int = 1) -> dict[str, Any]:
    """Keyword arguments of uvicorn.run for config.asgi:application."""
    return {
        "host": host,
        "port": port,
        "workers": workers,
        "http": PROTOCOL,
        # The h11 protocol's own limit, for anyone who picks it instead.
        "h11_max_incomplete_event_size": settings.MAX_REQUEST_HEADER_SIZE,
        "ws_max_size": WEBSOCKET_MAX_MESSAGE,
        # X-Forwarded-* are judged by Django (gallery.web.security) against FORWARDED_ALLOW_IPS:
        # uvicorn's own handling takes the first X-Forwarded-For hop with "*", which a client
        # writes itself when the proxy appends to the header.
        "proxy_headers": False,
        "log_level": "info",
        "access_log": settings.ACCESS_LOG,
        "lifespan": "off",
    }
