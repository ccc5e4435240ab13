"""Opening a share link: which live share a token names, and whether this client may use it.

Every door of a share (the page /s/<token>/, the JSON /api/v1/shared/<token>/ and the files
/s/<token>/m/<media token>/<level>/) opens it through `share_open`: unknown, revoked and
expired tokens are the same 404, and a password-protected share needs its unlock cookie. What
the share then shows comes from Media.objects.shared_by, the visibility rule's share half.

The unlock cookie is per share (`chipmunk_share_<id>`), signed with SECRET_KEY and a salt
naming the share's token, HttpOnly, SameSite=Lax, Secure on HTTPS (gallery.web.security),
and valid SHARE_UNLOCK_SECONDS. Its value is a digest of the password hash, so a share given a
new password locks again. Wrong passwords count in gallery.throttle per share and per client
address; past the limit every guess, right or wrong, is 429 until the window ends.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare

from gallery.exceptions import NotFound, PasswordRequired, Throttled, WrongPassword
from gallery.models import Share
from gallery.throttle import throttle_check, throttle_fail

COOKIE_PREFIX = "chipmunk_share_"


def share_live(token: str) -> Share | None:
    """The live share of this token (revoked, expired or unknown: None)."""
    if not token or len(token) > 64:
        return None
    return Share.objects.live().filter(token=token).first()


def share_open(request: HttpRequest, token: str) -> Share:
    """The share this client may use: NotFound (404) or PasswordRequired (403)."""
    share = share_live(token)
    if share is None:
        raise NotFound("no such share")
    if share.has_password and not share_unlocked(request, share):
        raise PasswordRequired("this share is protected by a password")
    return share


def _cookie_name(share: Share) -> str:
    return f"{COOKIE_PREFIX}{share.pk}"


def _cookie_value(share: Share) -> str:
    return hashlib.sha256(share.password_hash.encode()).hexdigest()[:32]


def _salt(share: Share) -> str:
    return f"share-unlock:{share.token}"


def share_unlocked(request: HttpRequest, share: Share) -> bool:
    value = request.get_signed_cookie(_cookie_name(share), default=None, salt=_salt(share),
                                      max_age=settings.SHARE_UNLOCK_SECONDS)
    return value is not None and constant_time_compare(value, _cookie_value(share))


def share_password_check(request: HttpRequest, share: Share, password: str) -> None:
    """Check a password for `share`: Throttled (429, `retry_after`) while too many guesses
    failed, WrongPassword (403) for a wrong one (counted). Returns for the right one."""
    if not share.has_password:
        return
    keys = [("share-password", str(share.pk)), ("share-address", request.META.get("REMOTE_ADDR") or "unknown")]
    wait = max(throttle_check(scope, key) for scope, key in keys)
    if wait:
        raise Throttled("too many wrong passwords: try again later", retry_after=wait)
    if not check_password(password, share.password_hash):
        for scope, key in keys:
            throttle_fail(scope, key)
        raise WrongPassword("wrong password")


def share_unlock_cookie(response: HttpResponse, share: Share) -> HttpResponse:
    """Let this browser open `share` for SHARE_UNLOCK_SECONDS."""
    response.set_signed_cookie(_cookie_name(share), _cookie_value(share), salt=_salt(share),
                               max_age=settings.SHARE_UNLOCK_SECONDS, httponly=True, samesite="Lax", path="/")
    return response


# --- Which files of a media a share sends ----------------------------------------------------
ORIGINAL_LEVEL = "0"
SEND = "send"
SEND_WITHOUT_GPS = "strip"  # a JPEG original: its GPS blanked as it streams
REFUSE = ""


def share_sends(share: Share, media, variant=None) -> str:
    """How `share` may send this media's original (variant None) or one of its variants:
    SEND, SEND_WITHOUT_GPS or REFUSE. Originals need allow_download. Without show_metadata no
    position may leave: the image levels are WebP written without metadata; a JPEG original
    has its GPS blanked; any other original or video rendition goes only when processing
    found no position in the file."""
    if variant is None and not share.allow_download:
        return REFUSE
    if share.show_metadata or (variant is not None and variant.content_type == "image/webp"):
        return SEND
    if variant is None and media.content_type == "image/jpeg":
        return SEND_WITHOUT_GPS
    return SEND if media.latitude is None else REFUSE


def share_file_url(share: Share, media, level: str) -> str:
    return f"/s/{share.token}/m/{media.token}/{level}/"


def share_files(share: Share, media) -> dict:
    """The files of `media` this share lists: {"variants": {level: variant}, "original": url or
    None}, from the prefetched variants."""
    variants = {v.level: v for v in media.variants.all() if share_sends(share, media, v) != REFUSE}
    original = share_file_url(share, media, ORIGINAL_LEVEL) if share_sends(share, media) != REFUSE else None
    return {"variants": variants, "original": original}
