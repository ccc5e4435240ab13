"""ASGI entry point: HTTP through Django, websockets through channels (uvicorn serves both)."""

from __future__ import annotations

import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from asgiref.sync import sync_to_async  # noqa: E402

from media_api.streaming import StreamingUploadASGIHandler  # noqa: E402  (needs Django set up first)


class ChipmunkASGIHandler(StreamingUploadASGIHandler):
    """Django's handler, with upload bodies streamed to the view, and one thread hop per request.

    Every middleware in MIDDLEWARE is synchronous at heart (MiddlewareMixin, WhiteNoise). In
    async mode Django runs each of their hooks through its own sync_to_async, some fifteen
    trips from the event loop to the request's thread and back per request, which cost more
    than the rest of a /m/ request put together on a busy machine (bench/stream.py). Built in
    sync mode, the chain and the view run in that thread in one trip, as under WSGI; the
    response is still sent by the event loop, and streamed bodies may be async iterators.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)
        self._middleware_chain = sync_to_async(self._middleware_chain, thread_sensitive=True)


django_asgi_app = ChipmunkASGIHandler()

from gallery.delivery import fast  # noqa: E402  (needs Django set up first)

delivery_app = fast.DeliveryApp()

# The library's pages, GET /api/v1/media/ (a scrolling grid asks for one after another), take
# the same lean door: its fixed threads keep their database connections, where Django's
# handler opens one in a new thread per request (on SQLite a new connection, its PRAGMAs and
# every statement prepared again cost ~3 ms of a ~10 ms page). The view, its authentication
# and the visibility rule are the same; the middlewares skipped are those of pages and forms.
MEDIA_LIST_PATH = "/api/v1/media/"


def lean(scope: dict) -> bool:
    """Whether the lean door serves the request: /m/ (fast.handles), or GET/HEAD of the list."""
    return fast.handles(scope) or (scope["type"] == "http" and scope["method"] in ("GET", "HEAD")
                                   and scope["path"] == MEDIA_LIST_PATH)


async def http_app(scope, receive, send) -> None:
    """/m/ and the media list through the lean door (gallery.delivery.fast), the rest through Django."""
    if lean(scope):
        await delivery_app(scope, receive, send)
    else:
        await django_asgi_app(scope, receive, send)


from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from gallery.routing import websocket_urlpatterns  # noqa: E402
from gallery.web.security import WebsocketOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": http_app,
        # Scheme, host and port of the Origin against the page's own origin (not the host only).
        "websocket": WebsocketOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# What is built by now (modules, settings, URL patterns, the ORM's metadata) lives as long as
# the process: frozen, it leaves the collector's generations, and the full collections that
# the many objects of a page of media JSON set off walk only what requests made, not the
# whole app (a sync page of 500: ~55 -> ~45 ms of CPU in-process, an album page ~17 -> ~15).
gc.collect()
gc.freeze()
# The youngest generation is collected after 10,000 new container objects, not 700: a page of
# media JSON holds ~2,000 at once and frees them by reference counting when it is sent (nothing
# of it is in a cycle, see media_api.pagination.PageResponse), so the default threshold walked
# them two or three times a page for nothing (~0.4 ms of a page's CPU); a request leaves ~200
# objects in cycles, so a collection still comes every few dozen requests.
gc.set_threshold(10_000, 10, 10)
