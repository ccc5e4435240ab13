from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from gallery.jobs import Worker


class Command(BaseCommand):
    help = "Run the background job worker until SIGTERM/SIGINT."

    def add_arguments(self, parser):
        parser.add_argument("--concurrency", type=int, default=settings.WORKER_CONCURRENCY)
        parser.add_argument("--poll", type=float, default=0.5, help="seconds between polls when idle")

    def handle(self, *args, concurrency, poll, **options):
        Worker(concurrency=max(1, concurrency), poll_seconds=poll).run()
