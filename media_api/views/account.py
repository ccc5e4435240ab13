"""/api/v1/me/ and /api/v1/usage/: the caller and their storage."""

from __future__ import annotations

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


class CountAndBytes(serializers.Serializer):
    count = serializers.IntegerField()
    bytes = serializers.IntegerField()


@extend_schema(summary="Storage used, by kind and by place (library, trash, vault)", responses=inline_serializer(
    "Usage", {"quota": serializers.IntegerField(), "used": serializers.IntegerField(),
              "reserved": serializers.IntegerField(), "free": serializers.IntegerField(),
              "by_kind": serializers.DictField(child=CountAndBytes()),
              "by_place": serializers.DictField(child=CountAndBytes()), "trash": CountAndBytes()}))
@api_view(["GET"])
def usage(request):
    """The caller's storage: quota, used, reserved and a breakdown by kind."""
    user = request.user.__class__.objects.get(pk=request.user.pk)
    # From the counters (every place: trashed and vault bytes count against the quota too),
    # never a scan of the media table.
    by_kind: dict[str, dict[str, int]] = {}
    by_place: dict[str, dict[str, int]] = {}
    for kind, place, count, size in KindUsage.objects.filter(owner=user).values_list("kind", "place", "count", "bytes"):
        for key, totals in ((kind, by_kind), (place, by_place)):
            entry = totals.setdefault(key, {"count": 0, "bytes": 0})
            entry["count"] += count
            entry["bytes"] += size
    empty = {"count": 0, "bytes": 0}
    return Response({
        "quota": user.quota_bytes, "used": user.used_bytes, "reserved": user.reserved_bytes,
        "free": user.free_bytes,
        "by_kind": {kind: by_kind.get(kind, empty) for kind in Media.Kind.values},
        # Trashed bytes count in `used` until the purge (TRASH_DAYS after the DELETE).
        "by_place": {place: by_place.get(place, empty) for place in KindUsage.Place.values},
        "trash": by_place.get(KindUsage.Place.TRASH, empty),
    })
