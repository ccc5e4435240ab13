"""The live-events websocket: a logged-in page hears about its user's media as they change."""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from gallery.events import user_group


class EventsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.group = user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def gallery_event(self, message: dict) -> None:
        payload = {k: v for k, v in message.items() if k != "type"}
        await self.send_json(payload)
