"""Who is calling: the one set of authentication classes every door uses.

The API (DRF), delivery (/m/) and later any other door authenticate a request with the
classes in REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]: a Bearer token that is an API
key (`chip_…`) or an access token from the OpenID provider, or the session (a password
login or the provider's login). `authenticate` runs them for a plain Django view. Scopes
come with the credential: a session has every scope, an API key the ones it was given, a
provider token the ones the provider granted.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest
from rest_framework import authentication, exceptions
from rest_framework.request import Request
from rest_framework.settings import api_settings

from gallery import identity
from gallery.exceptions import LoginRefused
from gallery.models import ApiKey, User
from gallery.services.accounts import KEY_PREFIX, apikey_authenticate
from gallery.services.identity import identity_login, identity_user

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
        if raw is None or not raw.startswith(KEY_PREFIX):
            return None  # no bearer token, or the provider's (ProviderTokenAuthentication)
        key = apikey_authenticate(raw=raw)
        if key is None:
            raise exceptions.AuthenticationFailed("invalid or revoked API key")
        return key.user, key

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) to anonymous calls.
        return 'Bearer realm="chipmunk"'


@dataclass(frozen=True)
class ProviderToken:
    """The credential of a request with the provider's access token: whose, which scopes."""

    subject: str
    scopes: frozenset[str]


class ProviderUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = "the identity provider cannot be reached to check this token"
    default_code = "provider_unavailable"


class ProviderTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <access token from the OpenID provider>` (any bearer token that is
    not an API key), checked by gallery.identity (introspection or JWT, cached <= 60 s). An
    unknown subject gets an account by the web login's own rules."""

    def authenticate(self, request):
        raw = bearer_token(request)
        if raw is None or raw.startswith(KEY_PREFIX):
            return None
        if not identity.configured():
            raise exceptions.AuthenticationFailed("unknown bearer token")
        try:
            token = identity.access_token_check(raw)
            issuer = identity.provider().issuer
            user = identity_user(issuer=issuer, subject=token.subject)
            if user is None:
                claims = {**token.claims, **identity.userinfo(raw)}
                if str(claims.get("sub")) != token.subject:
                    raise identity.TokenInvalid("the userinfo answer is about someone else")
                user = identity_login(issuer=issuer, claims=claims)
        except identity.TokenInvalid as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        except LoginRefused as exc:
            raise exceptions.AuthenticationFailed(exc.detail) from None
        except identity.ProviderUnavailable:
            raise ProviderUnavailable() from None
        if not user.is_active:
            raise exceptions.AuthenticationFailed("this account is deactivated")
        return user, ProviderToken(subject=token.subject, scopes=token.scopes)

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="chipmunk"'


class SessionAuthentication(authentication.SessionAuthentication):
    """The logged-in browser session (with DRF's CSRF check on unsafe methods)."""


def scopes_of(auth: object) -> set[str]:
    """The scopes a credential carries: an API key its own, a provider token the media scopes the
    provider granted, a session every one."""
    if isinstance(auth, ApiKey):
        return set(auth.scopes)
    if isinstance(auth, ProviderToken):
        return set(auth.scopes) & {READ, READ_WRITE}
    return {READ, READ_WRITE}


def auth_kind(auth: object) -> str:
    """How the caller authenticated: "api_key", "oidc" (a provider token) or "session"."""
    if isinstance(auth, ApiKey):
        return "api_key"
    if isinstance(auth, ProviderToken):
        return "oidc"
    return "session"


@dataclass(frozen=True)
class Caller:
    user: User
    auth: object  # the credential: an ApiKey, a ProviderToken, or None for a session
    scopes: frozenset[str]


def authenticate(request: HttpRequest) -> Caller | None:
    """The caller of a plain Django view, by the API's own authentication classes; None for
    anonymous callers, for credentials that are refused and for those without a media scope."""
    drf_request = Request(request, authenticators=[cls() for cls in api_settings.DEFAULT_AUTHENTICATION_CLASSES])
    try:
        user = drf_request.user
    except exceptions.APIException:
        return None
    if not user.is_authenticated:
        return None
    scopes = frozenset(scopes_of(drf_request.auth))
    if not scopes & {READ, READ_WRITE}:
        return None
    return Caller(user=user, auth=drf_request.auth, scopes=scopes)
