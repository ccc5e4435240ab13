"""Web login through the OpenID provider: mozilla-django-oidc, fed by discovery.

/oidc/authenticate/ starts the authorization-code flow (with PKCE and a nonce) and
/oidc/callback/ ends it; the endpoints come from gallery.identity.provider() when a login
needs them, never from hand-written settings. Every way a login can fail (provider down,
state mismatch, an ID token with a bad signature, audience or issuer, an expired code, a
deactivated account) is a page that says so, never a 500. Accounts: gallery.services.identity.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import auth
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render, resolve_url
from django.urls import reverse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView, OIDCLogoutView
from requests.exceptions import HTTPError

from gallery import identity
from gallery.exceptions import LoginRefused
from gallery.services.identity import identity_login
from gallery.vault import keys as vault_keys

log = logging.getLogger(__name__)


def login_options(request: HttpRequest) -> dict:
    """Template context: the provider's button label (empty without a provider) and whether the
    password form shows."""
    return {"oidc_provider_name": settings.OIDC_PROVIDER_NAME if identity.configured() else "",
            "local_login": settings.LOCAL_LOGIN}


def login_failed(request: HttpRequest, message: str, status: int) -> HttpResponse:
    return render(request, "registration/login_failed.html", {"message": message}, status=status)


class ProviderBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend with discovered endpoints, checked ID tokens (signature,
    issuer, audience, expiry, nonce) and accounts linked by (issuer, sub)."""

    def __init__(self, *args, **kwargs) -> None:
        # Django builds every backend for every password login too: no settings lookups or
        # provider calls here, only when a provider login actually arrives (authenticate).
        self.UserModel = get_user_model()
        self.OIDC_RP_SIGN_ALGO = "RS256"

    def authenticate(self, request, **kwargs):
        if request is None or "nonce" not in kwargs or not identity.configured():
            return None  # a password login, or no provider: not ours
        found = identity.provider()
        self.OIDC_OP_TOKEN_ENDPOINT = found.token_endpoint
        self.OIDC_OP_USER_ENDPOINT = found.userinfo_endpoint
        self.OIDC_RP_CLIENT_ID = settings.OIDC_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_CLIENT_SECRET
        return super().authenticate(request, **kwargs)

    def verify_token(self, token, **kwargs) -> dict:
        if not token:
            raise identity.TokenInvalid("the provider sent no ID token")
        return identity.id_token_verify(token, nonce=kwargs.get("nonce"))

    def get_userinfo(self, access_token, id_token, payload) -> dict:
        claims = dict(payload)
        if self.OIDC_OP_USER_ENDPOINT:
            extra = identity.userinfo(access_token)
            # OpenID Connect Core §5.3.2: userinfo must be about the ID token's subject.
            if str(extra.get("sub")) != str(payload.get("sub")):
                raise identity.TokenInvalid("the userinfo answer is about someone else")
            claims.update(extra)
        return claims

    def get_or_create_user(self, access_token, id_token, payload):
        claims = self.get_userinfo(access_token, id_token, payload)
        return identity_login(issuer=identity.provider().issuer, claims=claims)

    def get_user(self, user_id):
        # ModelBackend's: a deactivated user's session ends too (mozilla's would keep it).
        return ModelBackend.get_user(self, user_id)


class ProviderLoginView(OIDCAuthenticationRequestView):
    """/oidc/authenticate/: off to the provider's authorization endpoint."""

    def __init__(self, *args, **kwargs) -> None:
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)  # endpoints: in get()

    def get(self, request):
        if not identity.configured():
            raise Http404("no OpenID provider is configured")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = identity.provider().authorization_endpoint
        except identity.ProviderUnavailable as exc:
            log.warning("OpenID provider unavailable: %s", exc)
            return login_failed(request, f"{settings.OIDC_PROVIDER_NAME} cannot be reached right now. "
                                         "Please try again in a moment.", 503)
        self.OIDC_RP_CLIENT_ID = settings.OIDC_CLIENT_ID
        return super().get(request)


class ProviderCallbackView(OIDCAuthenticationCallbackView):
    """/oidc/callback/: the provider sends the browser back with a code (or an error)."""

    def get(self, request):
        if not identity.configured():
            raise Http404("no OpenID provider is configured")
        name = settings.OIDC_PROVIDER_NAME
        try:
            return super().get(request)
        except identity.ProviderUnavailable as exc:
            log.warning("OpenID provider unavailable during a login: %s", exc)
            return login_failed(request, f"{name} cannot be reached right now. Please try again in a moment.", 503)
        except HTTPError as exc:
            # The token endpoint refused the code: expired, already used, or not for us.
            log.warning("OpenID token request refused: %s", exc)
            return login_failed(request, f"{name} did not accept this sign-in: the sign-in code has expired or "
                                         "was already used. Please sign in again.", 400)
        except identity.TokenInvalid as exc:
            log.warning("OpenID login with an invalid token: %s", exc)
            return login_failed(request, f"The answer from {name} could not be trusted ({exc}). "
                                         "You have not been signed in.", 400)
        except LoginRefused as exc:
            return login_failed(request, f"You cannot sign in here: {exc.detail}.", 403)
        except SuspiciousOperation as exc:
            log.warning("OpenID callback refused: %s", exc)
            return self.login_failure()

    def login_failure(self):
        error = self.request.GET.get("error")
        if error:
            text = self.request.GET.get("error_description") or error
            return login_failed(self.request, f"{settings.OIDC_PROVIDER_NAME} did not sign you in: {text[:200]}.", 400)
        return login_failed(self.request, "This sign-in does not match one started in this browser (its state is "
                                          "unknown or was already used). Please sign in again.", 400)

    def login_success(self):
        # Always through auth.login, which gives the session a new key (no fixation).
        auth.login(self.request, self.user, backend="gallery.login.ProviderBackend")
        return super().login_success()


def provider_logout_url(request: HttpRequest) -> str:
    """Where logging out goes: the provider's end_session_endpoint when the session came from
    the provider and the provider has one (its session ends too), else the login page."""
    local = resolve_url(settings.LOGOUT_REDIRECT_URL)
    id_token = request.session.get("oidc_id_token")
    if not (id_token and identity.configured()):
        return local
    try:
        end_session = identity.provider().end_session_endpoint
    except identity.ProviderUnavailable:
        return local  # our session still ends
    if not end_session:
        return local
    query = urlencode({"id_token_hint": id_token, "client_id": settings.OIDC_CLIENT_ID,
                       "post_logout_redirect_uri": request.build_absolute_uri(reverse("login"))})
    return f"{end_session}{'&' if '?' in end_session else '?'}{query}"



class LogoutView(OIDCLogoutView):
    """/logout/: the session's unlocked vault is locked first (its wrapped key leaves the
    cache and the vault cookie goes), then the session ends (at the provider too, when it
    came from there: provider_logout_url)."""

    def post(self, request):
        if request.user.is_authenticated:
            vault_keys.forget(user_id=request.user.pk, credential=vault_keys.credential_of(request))
        response = super().post(request)
        response.delete_cookie(vault_keys.COOKIE, path="/", samesite="Strict")
        return response
