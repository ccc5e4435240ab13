from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from gallery.exceptions import ChipmunkError
from gallery.models import ApiKey, User
from gallery.services.accounts import apikey_create, apikey_revoke


class Command(BaseCommand):
    help = "Manage API keys: apikey create USER --scopes media.read,media.read_write | list USER | revoke PREFIX"

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a key; the key is printed alone on the last line")
        create.add_argument("username")
        create.add_argument("--scopes", default="media.read")
        create.add_argument("--name", default="")
        listing = sub.add_parser("list")
        listing.add_argument("username")
        revoke = sub.add_parser("revoke")
        revoke.add_argument("prefix")

    def _user(self, username: str) -> User:
        try:
            return User.objects.get(username=username)
        except User.DoesNotExist:
            raise CommandError(f"no user named {username!r}") from None

    def handle(self, *args, action, **options):
        if action == "create":
            user = self._user(options["username"])
            scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
            try:
                key, raw = apikey_create(user=user, name=options["name"] or "cli", scopes=scopes)
            except ChipmunkError as exc:
                raise CommandError(exc.detail) from None
            self.stdout.write(f"API key {key.prefix} for {user.username}, scopes {','.join(key.scopes)}.")
            self.stdout.write("It is shown once; only its hash is stored:")
            self.stdout.write(raw)
        elif action == "list":
            for key in ApiKey.objects.filter(user=self._user(options["username"])).order_by("created_at"):
                state = "revoked" if key.revoked_at else "active"
                self.stdout.write(f"{key.prefix}\t{key.name}\t{','.join(key.scopes)}\t{state}\t"
                                  f"last used {key.last_used_at or 'never'}")
        else:
            key = ApiKey.objects.filter(prefix=options["prefix"]).first()
            if key is None:
                raise CommandError(f"no key with prefix {options['prefix']!r}")
            apikey_revoke(key=key)
            self.stdout.write(f"revoked {key.prefix}")
