from __future__ import annotations

import uuid

from django.core.management.base import CommandError
from django.db import transaction

from gallery.management.progress import OperationsCommand
from gallery.models import Media, User
from gallery.services.media import media_queue_processing, variants_forget_missing


class Command(OperationsCommand):
    help = ("Queue processing again (it makes only what is missing): regenerate [--user U] [--kind K] [--failed] "
            "[--media ID ...] [--check-blobs]")

    def add_arguments(self, parser):
        parser.add_argument("--user")
        parser.add_argument("--kind", choices=Media.Kind.values)
        parser.add_argument("--failed", action="store_true", help="only media whose processing failed")
        parser.add_argument("--media", nargs="+", metavar="ID", help="only these media (ids, as verify prints them)")
        parser.add_argument("--check-blobs", action="store_true",
                            help="first forget variant rows whose object is gone, so they are made again")

    def handle(self, *args, user, kind, failed, media, check_blobs, **options):
        selected = Media.objects.exclude(status=Media.Status.UPLOADING)
        if user:
            if not User.objects.filter(username=user).exists():
                raise CommandError(f"no user named {user!r}")
            selected = selected.filter(owner__username=user)
        if kind:
            selected = selected.filter(kind=kind)
        if failed:
            selected = selected.filter(status=Media.Status.FAILED)
        if media:
            try:
                ids = [uuid.UUID(value) for value in media]
            except ValueError as exc:
                raise CommandError(f"not a media id: {exc}") from None
            selected = selected.filter(pk__in=ids)
        count = forgotten = 0
        with self.progress(total=selected.count(), label="queueing") as bar:
            for item in selected.prefetch_related("variants").iterator(chunk_size=500):
                if check_blobs:
                    forgotten += len(variants_forget_missing(media=item))
                with transaction.atomic():
                    media_queue_processing(media=item)
                count += 1
                bar.advance()
        if check_blobs:
            self.say(f"forgot {forgotten} variant(s) whose object was gone")
        self.say(f"queued {count} media")
