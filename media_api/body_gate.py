"""Upload bodies refused before they are read: anonymous, not allowed to write, or too large.

Django's ASGIHandler receives a whole request body (spooled to a temporary file past
FILE_UPLOAD_MAX_MEMORY_SIZE) before any middleware or view runs, so the view's 401 or 413
came after the bytes had filled the disk. For a request on an upload path whose body may be
large (a Content-Length over FILE_UPLOAD_MAX_MEMORY_SIZE, or chunked), the handler
(media_api.streaming) asks `gate_check` first, with the headers only: who is calling (API
key, else session, as the API's authentication classes would say), may they write, and can
a body of this size be theirs. A refusal is answered at once, the body never read, and the
connection closed. A body without a Content-Length is counted as it arrives and cut off at
the same limit (`BodyTooLarge`). CSRF and everything else are still the view's business.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from importlib import import_module
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth import get_user
from django.core.handlers.asgi import ASGIRequest
from django.db import connections
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import resolve_url

from gallery.auth import READ_WRITE, bearer_token, scopes_of
from gallery.exceptions import QuotaExceeded
from gallery.models import User
from gallery.services.accounts import apikey_authenticate, quota_check

BODY_METHODS = {"POST", "PUT", "PATCH"}
TUS_PREFIX = "/api/v1/uploads"
MULTIPART_PATHS = ("/api/v1/media/", "/upload/")  # the file-upload forms: the quota is the limit
GATED_PREFIXES = ("/api/v1/media", TUS_PREFIX, "/api/v1/direct-uploads", "/upload/")
# A multipart body carries a few hundred bytes of framing around the file; a body larger
# than the free space by more than this cannot hold a file that fits.
MULTIPART_SLACK = 64 * 1024
_DIGITS = re.compile(r"[0-9]{1,20}")


class BodyTooLarge(Exception):
    """A body without a Content-Length went past what the gate allowed it."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


@dataclass(frozen=True)
class Verdict:
    refusal: HttpResponse | None = None
    max_body: int | None = None  # the most a body of unknown length may carry; None: no limit here


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def declared_length(scope) -> int | None:
    """The Content-Length; None when absent or unreadable (uvicorn refuses those anyway)."""
    raw = (_header(scope, b"content-length") or "").strip()
    return int(raw) if _DIGITS.fullmatch(raw) else None


def applies(scope) -> bool:
    """Whether this request's body must wait for `gate_check`: a body-carrying method on an
    upload path, with a body that may not fit in memory (small ones are harmless)."""
    if scope["method"] not in BODY_METHODS or not scope["path"].startswith(GATED_PREFIXES):
        return False
    length = declared_length(scope)
    if length is not None:
        return length > settings.FILE_UPLOAD_MAX_MEMORY_SIZE
    return _header(scope, b"content-length") is not None or "chunked" in (_header(scope, b"transfer-encoding") or "").lower()


def multipart_quota_check(*, user: User, declared: int) -> None:
    """QuotaExceeded when a multipart body of `declared` bytes cannot hold a file that fits."""
    if declared > MULTIPART_SLACK:
        try:
            quota_check(user=user, requested=declared - MULTIPART_SLACK)
        except QuotaExceeded as exc:
            exc.extra["requested"] = declared
            raise


def _caller(request) -> tuple[User | None, set[str], str]:
    """(user, scopes, why not) from the credential alone, in the API's order: API key, session."""
    raw = bearer_token(request)
    if raw is not None:
        key = apikey_authenticate(raw=raw)
        if key is None:
            return None, set(), "invalid or revoked API key"
        return key.user, scopes_of(key), ""
    engine = import_module(settings.SESSION_ENGINE)
    request.session = engine.SessionStore(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    user = get_user(request)
    if not user.is_authenticated:
        return None, set(), "authentication credentials were not provided"
    return user, scopes_of(None), ""


def _error(path: str, status: int, code: str, detail: str, **extra) -> HttpResponse:
    response = JsonResponse({"error": code, "detail": detail, **extra}, status=status)
    response["Content-Length"] = str(len(response.content))
    response["Connection"] = "close"  # the body was not read: the connection cannot be reused
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="chipmunk"'
    if path.startswith(TUS_PREFIX):
        response["Tus-Resumable"] = "1.0.0"
    return response


def too_large(path: str, limit: int) -> HttpResponse:
    return _error(path, 413, "too_large", f"this request body may be at most {limit} bytes", max_size=limit)


def gate_check(scope) -> Verdict:
    """Decide from the headers whether this upload body may be read (runs in the request's thread)."""
    path, declared = scope["path"], declared_length(scope)
    refused = True
    try:
        try:
            request = ASGIRequest(scope, io.BytesIO())  # headers and cookies; the body stays unread
        except (UnicodeDecodeError, ValueError):
            return Verdict(refusal=_error(path, 400, "invalid", "the request line or headers are malformed"))
        user, scopes, why = _caller(request)
        if user is None:
            if path.startswith("/upload/"):  # the web form: to the login page, as login_required does
                login = resolve_url(settings.LOGIN_URL)
                response = HttpResponseRedirect(f"{login}?next={quote(path)}")
                response["Content-Length"] = "0"
                response["Connection"] = "close"
                return Verdict(refusal=response)
            return Verdict(refusal=_error(path, 401, "not_authenticated", why))
        if READ_WRITE not in scopes:
            return Verdict(refusal=_error(path, 403, "forbidden", "this credential lacks the scope media.read_write"))
        if path.startswith(TUS_PREFIX):
            # Streamed to the view, which checks Upload-Length and Content-Length against the
            # quota and the upload before it reads a byte.
            refused = False
            return Verdict()
        if path in MULTIPART_PATHS:
            limit = min(max(user.quota_bytes - user.used_bytes - user.reserved_bytes, 0), settings.TUS_MAX_SIZE)
            limit += MULTIPART_SLACK
            if declared is not None:
                try:
                    multipart_quota_check(user=user, declared=declared)
                except QuotaExceeded as exc:
                    return Verdict(refusal=_error(path, exc.status, exc.code, exc.detail, **exc.extra))
                if declared > limit:
                    return Verdict(refusal=too_large(path, limit))
        else:  # JSON endpoints
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            if declared is not None and declared > limit:
                return Verdict(refusal=too_large(path, limit))
        refused = False
        return Verdict(max_body=limit)
    finally:
        if refused:
            # Django never sees this request, so its request_finished will not close the
            # connection this thread opened (and the thread ends with the request).
            connections.close_all()
