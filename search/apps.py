from __future__ import annotations

from django.apps import AppConfig


class SearchConfig(AppConfig):
    name = "search"

    def ready(self) -> None:
        from gallery import health
        from search.backends import get_backend

        health.register("search", lambda: get_backend().health())
