"""API permission: the scope a request needs. Authentication itself is gallery.auth.

A session user (the web page) has every scope. An API key has the scopes it was given:
media.read allows safe methods only; media.read_write allows everything.
"""

from __future__ import annotations

from rest_framework import exceptions, permissions

from gallery.auth import READ, READ_WRITE, scopes_of


class InsufficientScope(exceptions.PermissionDenied):
    """403 `{"error": "insufficient_scope"}` (RFC 6750 §3.1), naming the scope needed."""

    default_code = "insufficient_scope"

    def __init__(self, scope: str) -> None:
        super().__init__(f"this credential lacks the scope {scope}")
        self.scope = scope


class HasScope(permissions.BasePermission):
    """Authenticated, with media.read for safe methods and media.read_write for the rest; the
    same for API keys and the provider's tokens."""

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        scopes = scopes_of(getattr(request, "auth", None))
        if request.method in permissions.SAFE_METHODS:
            if not scopes & {READ, READ_WRITE}:
                raise InsufficientScope(READ)
        elif READ_WRITE not in scopes:
            raise InsufficientScope(READ_WRITE)
        return True
