"""The OpenID provider as Chipmunk talks to it: discovery, signing keys, ID tokens, access tokens.

Reads only: HTTP to the provider and a cache. Which user a set of claims is, and creating or
linking accounts, is gallery.services.identity; the login views are gallery.login and the
API's bearer class is gallery.auth.

Discovery happens on first use, not at start-up: a provider that is down (Keycloak starts
slower than Chipmunk in compose) must not keep the gallery from starting, and local logins,
API keys and sessions keep working meanwhile. A failed fetch is not cached, so the next
request tries again; a good document is kept for DISCOVERY_TTL.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field

import jwt
import requests
from django.conf import settings
from django.core.cache import cache

DISCOVERY_TTL = 3600
# The longest a checked access token is trusted without asking the provider again (and never
# past its own exp): a token revoked at the provider stops working within this many seconds.
TOKEN_CACHE_SECONDS = 60
# Asymmetric algorithms only: "none" and HS* (keyed with the client secret) are refused.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY_SECONDS = 30


class ProviderUnavailable(Exception):
    """The provider cannot be reached or answers something unusable."""


class TokenInvalid(Exception):
    """A token we refuse: bad signature, wrong audience or issuer, expired, inactive, unknown."""


@dataclass(frozen=True)
class Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str
    end_session_endpoint: str = ""
    introspection_endpoint: str = ""


@dataclass(frozen=True)
class AccessToken:
    """What a provider's access token stands for, once checked."""

    subject: str
    scopes: frozenset[str]
    expires_at: float | None
    claims: dict = field(default_factory=dict, compare=False)


_lock = threading.Lock()
_discovered: dict[str, tuple[float, Provider]] = {}
_keys: dict[str, dict[str, jwt.PyJWK]] = {}


def configured() -> bool:
    return bool(settings.OIDC_ISSUER_URL)


def forget() -> None:
    """Drop the cached discovery documents and keys (a new provider configuration; tests)."""
    with _lock:
        _discovered.clear()
        _keys.clear()


def _request(method: str, url: str, **kwargs) -> requests.Response:
    try:
        return requests.request(method, url, timeout=settings.OIDC_TIMEOUT, **kwargs)
    except requests.RequestException as exc:
        raise ProviderUnavailable(f"the provider did not answer at {url}: {exc.__class__.__name__}") from exc


def _json(response: requests.Response) -> dict:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ProviderUnavailable(f"the provider answered {response.url} with something that is not a JSON object")
    return data


def provider() -> Provider:
    """The configured provider's endpoints, from its discovery document (cached)."""
    issuer = settings.OIDC_ISSUER_URL
    if not issuer:
        raise ProviderUnavailable("no OpenID provider is configured (OIDC_ISSUER_URL)")
    with _lock:
        cached = _discovered.get(issuer)
    if cached and time.monotonic() - cached[0] < DISCOVERY_TTL:
        return cached[1]
    response = _request("GET", f"{issuer}/.well-known/openid-configuration")
    if response.status_code != 200:
        raise ProviderUnavailable(f"the provider's discovery document answered {response.status_code}")
    doc = _json(response)
    # OpenID Connect Discovery 1.0 §4.3: the document must name the issuer it was fetched for.
    if str(doc.get("issuer", "")).rstrip("/") != issuer:
        raise ProviderUnavailable(f"the discovery document names the issuer {doc.get('issuer')!r}, not {issuer!r}")
    try:
        found = Provider(
            issuer=doc["issuer"], authorization_endpoint=doc["authorization_endpoint"],
            token_endpoint=doc["token_endpoint"], userinfo_endpoint=doc.get("userinfo_endpoint", ""),
            jwks_uri=doc["jwks_uri"], end_session_endpoint=doc.get("end_session_endpoint", ""),
            introspection_endpoint=doc.get("introspection_endpoint", ""),
        )
    except KeyError as exc:
        raise ProviderUnavailable(f"the discovery document lacks {exc.args[0]}") from None
    with _lock:
        _discovered[issuer] = (time.monotonic(), found)
    return found


def _signing_key(header: dict) -> jwt.PyJWK:
    """The provider's key named by the token's kid; the key set is fetched again once for an
    unknown kid (the provider rotated its keys)."""
    jwks_uri = provider().jwks_uri
    kid = header.get("kid")
    for attempt in (0, 1):
        with _lock:
            keys = _keys.get(jwks_uri)
        if keys is None or attempt:
            response = _request("GET", jwks_uri)
            if response.status_code != 200:
                raise ProviderUnavailable(f"the provider's key set answered {response.status_code}")
            keys = {}
            for entry in _json(response).get("keys", []):
                if entry.get("use", "sig") != "sig":
                    continue
                try:
                    keys[entry.get("kid", "")] = jwt.PyJWK(entry)
                except jwt.PyJWTError:
                    continue  # a key type we cannot use; others may do
            with _lock:
                _keys[jwks_uri] = keys
        if kid in keys:
            return keys[kid]
        if kid is None and len(keys) == 1:
            return next(iter(keys.values()))
    raise TokenInvalid("the token is signed with a key the provider does not publish")


def jwt_verify(token: str, *, audience: str) -> dict:
    """The claims of a JWT signed by the provider for `audience`, checked: signature, issuer,
    audience, expiry. TokenInvalid says which check failed."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenInvalid("not a signed token") from None
    if header.get("alg") not in ALGORITHMS:
        raise TokenInvalid(f"the token's algorithm {header.get('alg')!r} is not accepted")
    key = _signing_key(header)
    try:
        return jwt.decode(token, key, algorithms=[header["alg"]], audience=audience, issuer=provider().issuer,
                          leeway=LEEWAY_SECONDS, options={"require": ["exp", "iss", "sub", "aud"]})
    except jwt.InvalidSignatureError:
        raise TokenInvalid("the token's signature is not valid") from None
    except jwt.ExpiredSignatureError:
        raise TokenInvalid("the token has expired") from None
    except jwt.InvalidAudienceError:
        raise TokenInvalid("the token is meant for another audience") from None
    except jwt.InvalidIssuerError:
        raise TokenInvalid("the token comes from another issuer") from None
    except jwt.PyJWTError as exc:
        raise TokenInvalid(f"the token is not valid: {exc}") from None


def id_token_verify(token: str, *, nonce: str | None) -> dict:
    """The claims of an ID token from the login's token response (OpenID Connect Core §3.1.3.7)."""
    claims = jwt_verify(token, audience=settings.OIDC_CLIENT_ID)
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != settings.OIDC_CLIENT_ID:
        raise TokenInvalid("the token is meant for another audience")
    if nonce is not None and claims.get("nonce") != nonce:
        raise TokenInvalid("the token does not answer this sign-in (nonce mismatch)")
    return claims


def userinfo(access_token: str) -> dict:
    """The claims the userinfo endpoint gives for this access token."""
    endpoint = provider().userinfo_endpoint
    if not endpoint:
        raise ProviderUnavailable("the provider has no userinfo endpoint")
    response = _request("GET", endpoint, headers={"Authorization": f"Bearer {access_token}"})
    if response.status_code in (401, 403):
        raise TokenInvalid("the provider does not know this token")
    if response.status_code != 200:
        raise ProviderUnavailable(f"the provider's userinfo endpoint answered {response.status_code}")
    if response.headers.get("content-type", "").lower().startswith("application/jwt"):
        return jwt_verify(response.text, audience=settings.OIDC_CLIENT_ID)
    return _json(response)


def introspect(token: str) -> dict:
    """RFC 7662: the provider's answer about a token, asked with the client's credentials."""
    url = settings.OIDC_INTROSPECTION_URL or provider().introspection_endpoint
    if not url:
        raise ProviderUnavailable("the provider advertises no introspection endpoint: set OIDC_INTROSPECTION_URL, "
                                  "or OIDC_ACCESS_TOKEN_JWT=true for JWT access tokens")
    response = _request("POST", url, data={"token": token, "token_type_hint": "access_token"},
                        auth=(settings.OIDC_CLIENT_ID, settings.OIDC_CLIENT_SECRET),
                        headers={"Accept": "application/json"})
    if response.status_code != 200:
        raise ProviderUnavailable(f"the provider's introspection endpoint answered {response.status_code}")
    return _json(response)


def _scopes(claims: dict) -> frozenset[str]:
    scope = claims.get("scope", claims.get("scp", ""))
    return frozenset(scope.split() if isinstance(scope, str) else map(str, scope))


def access_token_check(token: str) -> AccessToken:
    """Who an access token from the provider stands for, and with which scopes: by JWT
    verification (OIDC_ACCESS_TOKEN_JWT) or introspection, plus userinfo when the answer has no
    `sub` (django-oauth-toolkit's has none). Cached for at most TOKEN_CACHE_SECONDS and never
    past the token's exp; refusals are not cached."""
    cache_key = "oidc-token:" + hashlib.sha256(token.encode()).hexdigest()
    found = cache.get(cache_key)
    if found is not None and (found.expires_at is None or found.expires_at > time.time()):
        return found
    if settings.OIDC_ACCESS_TOKEN_JWT:
        claims = jwt_verify(token, audience=settings.OIDC_ACCESS_TOKEN_AUDIENCE or settings.OIDC_CLIENT_ID)
    else:
        claims = introspect(token)
        if claims.get("active") is not True:
            raise TokenInvalid("the token is not active")
        if "iss" in claims and str(claims["iss"]).rstrip("/") != provider().issuer.rstrip("/"):
            raise TokenInvalid("the token comes from another issuer")
        if "exp" in claims and float(claims["exp"]) <= time.time():
            raise TokenInvalid("the token has expired")
        if not claims.get("sub"):
            claims = {**claims, "sub": userinfo(token).get("sub")}
    subject = str(claims.get("sub") or "")
    if not subject:
        raise TokenInvalid("the provider names no subject for this token")
    expires_at = float(claims["exp"]) if claims.get("exp") is not None else None
    checked = AccessToken(subject=subject, scopes=_scopes(claims), expires_at=expires_at, claims=claims)
    ttl = TOKEN_CACHE_SECONDS if expires_at is None else min(TOKEN_CACHE_SECONDS, int(expires_at - time.time()))
    if ttl > 0:
        cache.set(cache_key, checked, ttl)
    return checked
