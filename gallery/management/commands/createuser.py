from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from config.settings import parse_size
from gallery.exceptions import ChipmunkError
from gallery.services.accounts import user_create


class Command(BaseCommand):
    help = "Create a local account: createuser NAME --password PW [--plan plus] [--quota 10GB]"

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        parser.add_argument("--plan", help="a plan from QUOTA_PLANS (default: DEFAULT_PLAN); the quota follows it")
        parser.add_argument("--quota", help="a personal quota that replaces the plan's, e.g. 500MB, 10GB")
        parser.add_argument("--email", default="")
        parser.add_argument("--admin", action="store_true", help="staff and superuser")
        parser.add_argument("--time-zone", default="UTC")

    def handle(self, *args, username, password, plan, quota, email, admin, time_zone, **options):
        try:
            quota_bytes = parse_size(quota) if quota else None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        try:
            user = user_create(username=username, password=password, plan=plan, quota_bytes=quota_bytes, email=email,
                               is_staff=admin, is_superuser=admin, time_zone=time_zone)
        except ChipmunkError as exc:
            raise CommandError(exc.detail) from None
        self.stdout.write(f"created {user.username} ({user.pk}) on the plan {user.plan} "
                          f"with a quota of {user.quota_bytes} bytes")
