"""bench/stream.py's floor in x-accel mode: an ASGI app that decides nothing.

It answers every HTTP request at once with the headers in ACCEL_FLOOR_HEADERS (JSON pairs:
what ours answered to a range, X-Accel-Redirect included) and an empty body, so nginx sends
the same file as for ours. Served by bench/stream.py as ours is (config.server's options),
behind the same deploy/nginx.conf: its ranges are the round trip nginx -> uvicorn -> nginx
with no decision in it. Never part of Chipmunk.
"""

from __future__ import annotations

import json
import os

HEADERS = [(name.encode("latin-1"), value.encode("latin-1"))
           for name, value in json.loads(os.environ["ACCEL_FLOOR_HEADERS"])]


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": b""})
