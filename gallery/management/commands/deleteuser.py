from __future__ import annotations

import sys

from django.core.management.base import CommandError
from django.db.models import Sum
from django.template.defaultfilters import filesizeformat

from gallery.management.progress import OperationsCommand
from gallery.models import KindUsage, User
from gallery.services.accounts import user_delete
from gallery.storage import STORAGE_ERRORS


class Command(OperationsCommand):
    help = ("Delete an account with all its media, albums, keys and blobs: deleteuser USER --purge [--yes]. "
            "It asks to confirm unless --yes is given; to stop someone logging in, deactivate them instead.")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--purge", action="store_true", help="required: the account's blobs are deleted too")
        parser.add_argument("--yes", action="store_true", help="do not ask (for scripts)")

    def handle(self, *args, username, purge, yes, **options):
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        if not purge:
            raise CommandError("deleting an account deletes all its media and their files: pass --purge to say so "
                               "(or deactivate the account in the admin to keep everything)")
        totals = KindUsage.objects.filter(owner=user).aggregate(n=Sum("count"), size=Sum("bytes"))
        summary = (f"{user.username} ({user.pk}): {totals['n'] or 0} media, {filesizeformat(totals['size'] or 0)}, "
                   "with albums, API keys, uploads in flight and exports")
        if not yes:
            if not sys.stdin.isatty():
                raise CommandError("not asking on a stream that is not a terminal: pass --yes to confirm")
            self.stdout.write(f"This deletes {summary}, and cannot be undone.")
            answer = input(f"Type the user name ({user.username}) to confirm: ")
            if answer.strip() != user.username:
                raise CommandError("not confirmed: nothing was deleted")
        try:
            blobs = user_delete(user=user)
        except STORAGE_ERRORS as exc:
            self.fail(f"the account's rows are deleted but some blobs are not ({exc}); "
                      "`manage.py verify --delete-orphans` removes what is left")
        self.say(f"deleted {summary}; {blobs} blobs removed")
