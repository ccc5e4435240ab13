"""Users, groups and clients of the test provider; run again to allow more redirect URIs."""

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand
from oauth2_provider.models import Application

SECRET = "chipmunk-secret"
USERS = {  # username: (first, last, email, groups)
    "dana": ("Dana", "Scully", "dana@example.org", ["staff", "plus"]),
    "erin": ("Erin", "Reyes", "erin@example.org", ["pro"]),
    "frank": ("Frank", "Black", "frank@example.org", []),
    "unverified-frank": ("Frank", "Impostor", "frank@example.org", []),
    "gus": ("Gus", "Grey", "gus@example.org", []),
    "hana": ("Hana", "Mori", "hana@example.org", []),
}
WEB_CLIENTS = ("chipmunk", "chipmunk-wrong-aud", "chipmunk-wrong-iss", "chipmunk-bad-sig")


class Command(BaseCommand):
    def add_arguments(self, parser):
        parser.add_argument("--redirect-uri", action="append", default=[])
        parser.add_argument("--logout-uri", action="append", default=[])

    def handle(self, *args, redirect_uri, logout_uri, **options):
        for name in ("free", "plus", "pro", "staff"):
            Group.objects.get_or_create(name=name)
        for username, (first, last, email, groups) in USERS.items():
            user, created = User.objects.get_or_create(username=username, defaults={
                "first_name": first, "last_name": last, "email": email})
            if created:
                user.set_password(f"{username}-password")
                user.save()
                for group in groups:
                    user.groups.add(Group.objects.get(name=group))
        for client_id in WEB_CLIENTS:
            self._client(client_id, Application.CLIENT_CONFIDENTIAL, redirect_uri, logout_uri)
        self._client("chipmunk-phone", Application.CLIENT_PUBLIC, ["chipmunk://oauth/callback"], [])

    def _client(self, client_id, kind, redirects, logouts):
        app = Application.objects.filter(client_id=client_id).first()
        if app is None:
            app = Application(client_id=client_id, name=client_id, client_type=kind,
                              authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
                              skip_authorization=True, algorithm=Application.RS256_ALGORITHM,
                              client_secret=SECRET if kind == Application.CLIENT_CONFIDENTIAL else "")
        app.redirect_uris = " ".join(sorted(set(app.redirect_uris.split()) | set(redirects)))
        app.post_logout_redirect_uris = " ".join(sorted(set(app.post_logout_redirect_uris.split()) | set(logouts)))
        app.save()
