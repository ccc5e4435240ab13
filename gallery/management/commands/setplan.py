from __future__ import annotations

from django.core.management.base import CommandError
from django.template.defaultfilters import filesizeformat

from gallery.exceptions import ChipmunkError
from gallery.management.progress import OperationsCommand
from gallery.models import User
from gallery.services.accounts import user_reset_quota, user_set_plan


class Command(OperationsCommand):
    help = "Put a user on a plan of QUOTA_PLANS: setplan USER PLAN [--clear-quota]"

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("plan")
        parser.add_argument("--clear-quota", action="store_true",
                            help="also drop the user's personal quota, so the plan's applies")

    def handle(self, *args, username, plan, clear_quota, **options):
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        try:
            user_set_plan(user=user, plan=plan)
        except ChipmunkError as exc:
            raise CommandError(exc.detail) from None
        if clear_quota:
            user_reset_quota(user=user)
        self.say(f"{user.username} is on the plan {user.plan}: quota {filesizeformat(user.quota_bytes)}, "
                 f"used {filesizeformat(user.used_bytes)}")
        if user.personal_quota_bytes is not None:
            self.say(f"note: a personal quota of {filesizeformat(user.personal_quota_bytes)} replaces the plan's; "
                     "--clear-quota drops it")
        if user.used_bytes > user.quota_bytes:
            self.say("note: more is used than the quota allows: new uploads are refused, nothing is deleted")
