"""/api/v1/me/ and /api/v1/usage/: the caller and their storage."""

from __future__ import annotations

from django.db.models import Sum
from rest_framework.decorators import api_view
from rest_framework.response import Response

from gallery.auth import auth_kind, scopes_of
from gallery.models import KindUsage, Media


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
    # From the counters (every place: trashed and vault bytes count against the quota too),
    # never a scan of the media table.
    by_kind = {
        row["kind"]: {"count": row["n"] or 0, "bytes": row["size"] or 0}
        for row in KindUsage.objects.filter(owner=user).values("kind").annotate(n=Sum("count"), size=Sum("bytes"))
    }
    return Response({
        "quota": user.quota_bytes, "used": user.used_bytes, "reserved": user.reserved_bytes,
        "free": user.free_bytes,
        "by_kind": {kind: by_kind.get(kind, {"count": 0, "bytes": 0}) for kind in Media.Kind.values},
    })
