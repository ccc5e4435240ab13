from __future__ import annotations

from django.apps import AppConfig


class MediaApiConfig(AppConfig):
    name = "media_api"

    def ready(self) -> None:
        # The OpenAPI extensions register themselves on import (how callers authenticate).
        from media_api import schema  # noqa: F401
