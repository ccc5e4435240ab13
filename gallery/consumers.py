"""The live-events websocket: a logged-in page hears about its user's media as they change."""

from __future__ import annotations

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.exceptions import ValidationError

from gallery.events import user_group
from gallery.models import Media


class EventsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.group = user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs) -> None:
        # The page sends nothing yet; a frame that is not a JSON text message ends the socket
        # with 1003 (unsupported data) instead of an exception in the ASGI application.
        if text_data is None:
            await self.close(code=1003)
            return
        try:
            content = json.loads(text_data)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the stack
            await self.close(code=1003)
            return
        await self.receive_json(content)

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def gallery_event(self, message: dict) -> None:
        payload = {k: v for k, v in message.items() if k != "type"}
        media_id = payload.get("media_id")
        # The one visibility rule decides here too: a page never hears of media it could not
        # open (a vault item, say). A deletion names only an id the page may already show.
        if media_id and payload.get("event") != "media.deleted" and not await self._may_see(media_id):
            return
        await self.send_json(payload)

    @database_sync_to_async
    def _may_see(self, media_id: str) -> bool:
        try:
            return Media.objects.visible_to(self.scope["user"]).filter(pk=media_id).exists()
        except ValidationError:  # not an id at all
            return False
