"""Live events to a user's open pages, sent over the channel layer after commit.

Every logged-in websocket joins the group `user-<id>` (gallery.consumers); services call
send_after_commit so a page never hears about a row that was rolled back.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)


def user_group(user_id: uuid.UUID | str) -> str:
    return f"user-{user_id}"


def send(user_id: uuid.UUID | str, event: str, **data: Any) -> None:
    """Send one event now; a channel layer that is down costs the event, never the caller."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(user_group(user_id), {"type": "gallery.event", "event": event, **data})
    except Exception:  # the event is best-effort: pages also refresh from the API
        log.warning("could not send %s to user %s", event, user_id, exc_info=True)


def send_after_commit(user_id: uuid.UUID | str, event: str, **data: Any) -> None:
    transaction.on_commit(lambda: send(user_id, event, **data))
