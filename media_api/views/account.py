"""/api/v1/me/ and /api/v1/usage/: the caller and their storage."""

from __future__ import annotations

from django.db.models import Sum
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.response import Response

from gallery.auth import auth_kind, scopes_of
from gallery.models import KindUsage, Media


@extend_schema(summary="Who is calling", responses=inline_serializer("Me", {
    "id": serializers.UUIDField(), "username": serializers.CharField(), "email": serializers.CharField(),
    "name": serializers.CharField(), "plan": serializers.CharField(), "quota": serializers.IntegerField(),
    "used": serializers.IntegerField(), "time_zone": serializers.CharField(),
    "auth": serializers.CharField(help_text="session, api_key or oidc"),
    "scopes": serializers.ListField(child=serializers.CharField())}))
@api_view(["GET"])
def me(request):
    """Who the credential belongs to, how it authenticated, its scopes, and the plan and quota."""
    user = request.user.__class__.objects.get(pk=request.user.pk)
    return Response({
        "id": str(user.pk), "username": user.username, "email": user.email, "name": user.get_full_name(),
        "plan": user.plan, "quota": user.quota_bytes, "used": user.used_bytes, "time_zone": user.time_zone,
        "auth": auth_kind(request.auth), "scopes": sorted(scopes_of(request.auth)),
    })


@extend_schema(summary="Storage used, by kind", responses=inline_serializer("Usage", {
    "quota": serializers.IntegerField(), "used": serializers.IntegerField(), "reserved": serializers.IntegerField(),
    "free": serializers.IntegerField(),
    "by_kind": serializers.DictField(child=inline_serializer("KindUsage", {
        "count": serializers.IntegerField(), "bytes": serializers.IntegerField()}))}))
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
