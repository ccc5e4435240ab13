"""API permission: the scope a request needs. Authentication itself is gallery.auth.

A session user (the web page) has every scope. An API key has the scopes it was given:
media.read allows safe methods only; media.read_write allows everything.
"""

from __future__ import annotations

from rest_framework import permissions

from gallery.auth import READ, READ_WRITE, scopes_of


class HasScope(permissions.BasePermission):
    """Authenticated, with media.read for safe methods and media.read_write for the rest."""

    message = "this credential lacks the scope media.read_write"

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        scopes = scopes_of(getattr(request, "auth", None))
        if request.method in permissions.SAFE_METHODS:
            return bool(scopes & {READ, READ_WRITE})
        return READ_WRITE in scopes
