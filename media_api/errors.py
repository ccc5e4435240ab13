"""One exception handler: every API error is JSON `{"error": code, "detail": text, ...}`."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from gallery.exceptions import ChipmunkError

_CODES = {
    status.HTTP_400_BAD_REQUEST: "invalid",
    status.HTTP_401_UNAUTHORIZED: "not_authenticated",
    status.HTTP_403_FORBIDDEN: "forbidden",
    status.HTTP_404_NOT_FOUND: "not_found",
    status.HTTP_405_METHOD_NOT_ALLOWED: "method_not_allowed",
    status.HTTP_406_NOT_ACCEPTABLE: "not_acceptable",
    status.HTTP_413_REQUEST_ENTITY_TOO_LARGE: "too_large",
    status.HTTP_415_UNSUPPORTED_MEDIA_TYPE: "unsupported_media_type",
    status.HTTP_429_TOO_MANY_REQUESTS: "throttled",
}


def error_response(code: str, detail: str, status_code: int, **extra) -> Response:
    return Response({"error": code, "detail": detail, **extra}, status=status_code)


def exception_handler(exc, context):
    if isinstance(exc, ChipmunkError):
        response = error_response(exc.code, exc.detail, exc.status, **exc.extra)
        if "retry_after" in exc.extra:  # a throttled guess (gallery.throttle)
            response["Retry-After"] = str(exc.extra["retry_after"])
        return response
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("not found")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"error": "invalid", "detail": "the request is not valid", "fields": data}
    else:
        detail = data.get("detail", "") if isinstance(data, dict) else str(data)
        response.data = {"error": _CODES.get(response.status_code, "error"), "detail": str(detail)}
        if exc.default_code in ("insufficient_scope", "provider_unavailable"):
            response.data["error"] = exc.default_code
        if getattr(exc, "scope", None):
            response["WWW-Authenticate"] = f'Bearer realm="chipmunk", error="insufficient_scope", scope="{exc.scope}"'
    return response
