from __future__ import annotations

from django.apps import AppConfig


class MediaApiConfig(AppConfig):
    name = "media_api"
