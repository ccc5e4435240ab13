"""Identity: which account the provider's claims stand for, created or linked at first login.

Accounts are linked by (issuer, sub), never by e-mail alone: a local account with the same
verified e-mail is taken over only when OIDC_LINK_BY_EMAIL is on. The provider's groups set
the plan at each login (OIDC_PLAN_CLAIM). Talking to the provider is gallery.identity.
"""

from __future__ import annotations

import re
import secrets

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from gallery.exceptions import LoginRefused
from gallery.models import Identity, User
from gallery.services.accounts import user_create

USERNAME_MAX = 150


def plan_from_claims(claims: dict) -> str | None:
    """The first value of OIDC_PLAN_CLAIM that names a plan; Keycloak's group paths
    ("/plus", "/plans/plus") count by their last segment."""
    values = claims.get(settings.OIDC_PLAN_CLAIM)
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        return None
    for value in values:
        name = str(value).strip().rstrip("/").rpartition("/")[2]
        if name in settings.QUOTA_PLANS:
            return name
    return None


def _verified(claims: dict) -> bool:
    # Some providers send "true" as a string.
    return claims.get("email_verified") in (True, "true", "True")


def _names(claims: dict) -> tuple[str, str]:
    first, last = str(claims.get("given_name") or ""), str(claims.get("family_name") or "")
    if not (first or last) and claims.get("name"):
        first, _, last = str(claims["name"]).partition(" ")
    return first[:150], last[:150]


def _unique_username(claims: dict) -> str:
    wanted = str(claims.get("preferred_username") or str(claims.get("email") or "").partition("@")[0] or "user")
    base = re.sub(r"[^\w.@+-]", "", wanted)[: USERNAME_MAX - 8] or "user"
    if not User.objects.filter(username__iexact=base).exists():
        return base
    for n in range(2, 100):
        candidate = f"{base}-{n}"
        if not User.objects.filter(username__iexact=candidate).exists():
            return candidate
    return f"{base}-{secrets.token_hex(3)}"


def _linkable_user(claims: dict) -> User | None:
    """The local account with the claims' verified e-mail, when OIDC_LINK_BY_EMAIL allows it."""
    email = str(claims.get("email") or "")
    if not (settings.OIDC_LINK_BY_EMAIL and email and _verified(claims)):
        return None
    matches = list(User.objects.filter(email__iexact=email)[:2])
    if len(matches) > 1:
        raise LoginRefused("several accounts here have this e-mail address; an admin must link yours")
    return matches[0] if matches else None


def identity_login(*, issuer: str, claims: dict, login: bool = True) -> User:
    """The account for a provider's claims: the one linked to (issuer, sub), else a local one with
    the same verified e-mail (OIDC_LINK_BY_EMAIL), else a new one (username from
    preferred_username, made unique; e-mail and name from the claims). At a login the plan
    follows OIDC_PLAN_CLAIM and the e-mail and name are refreshed. LoginRefused for a
    deactivated account."""
    subject = str(claims.get("sub") or "")
    if not subject:
        raise LoginRefused("the provider sent no subject (sub)")
    try:
        with transaction.atomic():
            return _login(issuer=issuer, subject=subject, claims=claims, login=login)
    except IntegrityError:
        # Two first logins at once: the other one linked the identity; use it.
        with transaction.atomic():
            return _login(issuer=issuer, subject=subject, claims=claims, login=login)


def _login(*, issuer: str, subject: str, claims: dict, login: bool) -> User:
    identity = Identity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
    plan = plan_from_claims(claims)
    if identity is None:
        user = _linkable_user(claims)
        if user is None:
            first, last = _names(claims)
            user = user_create(username=_unique_username(claims), password=None, email=str(claims.get("email") or ""),
                               first_name=first, last_name=last, plan=plan)
        identity = Identity.objects.create(user=user, issuer=issuer, subject=subject)
    user = identity.user
    if not user.is_active:
        raise LoginRefused("this account is deactivated")
    if login:
        changed = {"plan": plan} if plan else {}
        if claims.get("email"):
            changed["email"] = str(claims["email"])
        if any(claims.get(k) for k in ("given_name", "family_name", "name")):
            changed["first_name"], changed["last_name"] = _names(claims)
        changed = {k: v for k, v in changed.items() if getattr(user, k) != v}
        for name, value in changed.items():
            setattr(user, name, value)
        if changed:
            User.objects.filter(pk=user.pk).update(**changed)
        Identity.objects.filter(pk=identity.pk).update(last_login_at=timezone.now())
    return user


def identity_user(*, issuer: str, subject: str) -> User | None:
    """The account linked to (issuer, sub), if any (a read; no login happens)."""
    identity = Identity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
    return identity.user if identity else None
