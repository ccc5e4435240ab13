from __future__ import annotations

from django.apps import AppConfig


class SearchConfig(AppConfig):
    name = "search"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from gallery import health
        from search import signals
        from search.backends import get_backend
        from search.indexing import lag

        signals.connect()
        health.register("search", lambda: {**get_backend().health(), **lag()})
