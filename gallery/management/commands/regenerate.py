from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from gallery.models import Media, User
from gallery.services.media import media_queue_processing


class Command(BaseCommand):
    help = "Queue processing again (it makes only what is missing): regenerate [--user U] [--kind K] [--failed]"

    def add_arguments(self, parser):
        parser.add_argument("--user")
        parser.add_argument("--kind", choices=Media.Kind.values)
        parser.add_argument("--failed", action="store_true", help="only media whose processing failed")

    def handle(self, *args, user, kind, failed, **options):
        media = Media.objects.exclude(status=Media.Status.UPLOADING)
        if user:
            if not User.objects.filter(username=user).exists():
                raise CommandError(f"no user named {user!r}")
            media = media.filter(owner__username=user)
        if kind:
            media = media.filter(kind=kind)
        if failed:
            media = media.filter(status=Media.Status.FAILED)
        count = 0
        for item in media.iterator():
            with transaction.atomic():
                media_queue_processing(media=item)
            count += 1
        self.stdout.write(f"queued {count} media")
