"""Who is calling: the one set of authentication classes every door uses.

The API (DRF), delivery (/m/) and later any other door authenticate a request with the
classes in REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]: an API key as a Bearer
token, or the session (local login now; the provider's login with OIDC). `authenticate`
runs them for a plain Django view. Scopes come with the credential: a session has every
scope, an API key the ones it was given.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest
from rest_framework import authentication, exceptions
from rest_framework.request import Request
from rest_framework.settings import api_settings

from gallery.models import ApiKey, User
from gallery.services.accounts import apikey_authenticate

READ = "media.read"
READ_WRITE = "media.read_write"


def bearer_token(request: HttpRequest) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer chip_…`: an API key, refused at once when revoked."""

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


class SessionAuthentication(authentication.SessionAuthentication):
    """The logged-in browser session (with DRF's CSRF check on unsafe methods)."""


def scopes_of(auth: object) -> set[str]:
    """The scopes a credential carries: an API key its own, a session every one."""
    if isinstance(auth, ApiKey):
        return set(auth.scopes)
    return {READ, READ_WRITE}


@dataclass(frozen=True)
class Caller:
    user: User
    auth: object  # the credential: an ApiKey, or None for a session
    scopes: frozenset[str]


def authenticate(request: HttpRequest) -> Caller | None:
    """The caller of a plain Django view, by the API's own authentication classes; None for
    anonymous callers and for credentials that are refused."""
    drf_request = Request(request, authenticators=[cls() for cls in api_settings.DEFAULT_AUTHENTICATION_CLASSES])
    try:
        user = drf_request.user
    except exceptions.APIException:
        return None
    if not user.is_authenticated:
        return None
    return Caller(user=user, auth=drf_request.auth, scopes=frozenset(scopes_of(drf_request.auth)))
