"""manage.py reindex [--user U]: rebuild the search index (of one user) with a progress bar."""

from __future__ import annotations

import time
from typing import Callable

from django.core.management.base import BaseCommand, CommandError

from gallery.models import User
from search.backends import get_backend
from search.indexing import reindex


class ProgressBar:
    """One line on stderr, redrawn at most ten times a second: bar, done/total, rate."""

    def __init__(self, write: Callable[[str], None], width: int = 30) -> None:
        self.write, self.width = write, width
        self.started = self.drawn = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.drawn < 0.1:
            return
        self.drawn = now
        filled = self.width * done // total if total else self.width
        rate = done / (now - self.started) if now > self.started else 0.0
        percent = 100 * done // total if total else 100
        self.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {percent}% "
                          f"{rate:.0f} documents/s")


class Command(BaseCommand):
    help = "Rebuild the search index: settings (search_setup), every searchable media, then drop what is gone."

    def add_arguments(self, parser):
        parser.add_argument("--user", help="only this user's media (username)")

    def handle(self, *args, user=None, **options):
        user_id = None
        if user is not None:
            try:
                user_id = User.objects.get(username=user).pk
            except User.DoesNotExist:
                raise CommandError(f"no user named {user!r}") from None
        started = time.monotonic()
        try:
            done = reindex(user_id=user_id, backend=get_backend(), progress=ProgressBar(lambda text: self.stderr.write(text, ending="")))
        except Exception as exc:
            raise CommandError(f"reindex failed: {type(exc).__name__}: {exc}") from exc
        self.stderr.write("")
        seconds = time.monotonic() - started
        self.stdout.write(f"indexed {done} media in {seconds:.1f} s ({done / seconds if seconds else 0:.0f}/s)")
