"""/api/v1/me/ and /api/v1/usage/: the caller and their storage."""

from __future__ import annotations

from django.db.models import Count, Sum
from rest_framework.decorators import api_view
from rest_framework.response import Response

from gallery.auth import auth_kind, scopes_of
from gallery.models import Media


@api_view(["GET"])
def me(request):
    """Who the credential belongs to, how it authenticated, its scopes, and the plan and quota."""
    user = request.user.__class__.objects.get(pk=request.user.pk)
    return Response({
        "id": str(user.pk), "username": user.username, "email": user.email, "name": user.get_full_name(),
        "plan": user.plan, "quota": user.quota_bytes, "used": user.used_bytes, "time_zone": user.time_zone,
        "auth": auth_kind(request.auth), "scopes": sorted(scopes_of(request.auth)),
    })


@api_view(["GET"])
def usage(request):
    """The caller's storage: quota, used, reserved and a breakdown by kind."""
    user = request.user.__class__.objects.get(pk=request.user.pk)
    by_kind = {
        row["kind"]: {"count": row["count"], "bytes": row["bytes"] or 0}
        for row in Media.objects.owned_by(user).values("kind").annotate(count=Count("id"), bytes=Sum("size"))
    }
    return Response({
        "quota": user.quota_bytes, "used": user.used_bytes, "reserved": user.reserved_bytes,
        "free": user.free_bytes,
        "by_kind": {kind: by_kind.get(kind, {"count": 0, "bytes": 0}) for kind in Media.Kind.values},
    })
