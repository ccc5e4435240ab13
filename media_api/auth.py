"""API credentials: `Authorization: Bearer <api key>` (or a session), and scope checks.

A session user (the web page) has every scope. An API key has the scopes it was given:
media.read allows safe methods only; media.read_write allows everything.
"""

from __future__ import annotations

from rest_framework import authentication, exceptions, permissions

from gallery.models import ApiKey
from gallery.services.accounts import apikey_authenticate

READ = "media.read"
READ_WRITE = "media.read_write"


def bearer_token(request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        raw = bearer_token(request)
        if raw is None:
            return None
        key = apikey_authenticate(raw=raw)
        if key is None:
            raise exceptions.AuthenticationFailed("invalid or revoked API key")
        return key.user, key

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) to anonymous calls.
        return 'Bearer realm="chipmunk"'


def scopes_of(request) -> set[str]:
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiKey):
        return set(auth.scopes)
    return {READ, READ_WRITE}


class HasScope(permissions.BasePermission):
    """Authenticated, with media.read for safe methods and media.read_write for the rest."""

    message = "this credential lacks the scope media.read_write"

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        scopes = scopes_of(request)
        if request.method in permissions.SAFE_METHODS:
            return bool(scopes & {READ, READ_WRITE})
        return READ_WRITE in scopes
