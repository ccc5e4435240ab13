"""manage.py search_setup: create the search index and apply its settings (idempotent)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from search.backends import get_backend


class Command(BaseCommand):
    help = "Create the search index and apply its settings; running it again changes nothing."

    def handle(self, *args, **options):
        try:
            described = get_backend().setup()
        except Exception as exc:
            raise CommandError(f"search setup failed: {type(exc).__name__}: {exc}") from exc
        self.stdout.write(f"search ready: {described}")
