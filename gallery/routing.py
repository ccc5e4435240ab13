"""Websocket routes (config.asgi mounts them)."""

from __future__ import annotations

from django.urls import path

from gallery.consumers import EventsConsumer

websocket_urlpatterns = [path("ws/events/", EventsConsumer.as_asgi())]
