"""/api/v1/trash/: what DELETE /api/v1/media/<id>/ moved there; restore; empty."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Sum
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, viewsets
from rest_framework.decorators import api_view
from rest_framework.response import Response

from gallery.models import KindUsage, Media
from gallery.services.trash import trash_empty, trash_restore
from media_api.pagination import KeysetPagination
from media_api.renderers import FastJSONRenderer
from media_api.serializers import MediaIdsSerializer, MediaSerializer
from media_api.views.media import WithRelations


class TrashViewSet(WithRelations, viewsets.GenericViewSet):
    serializer_class = MediaSerializer
    pagination_class = KeysetPagination
    renderer_classes = [FastJSONRenderer]

    def get_queryset(self):
        return Media.objects.trashed_for(self.request.user)  # a page reads MediaRows (WithRelations)

    def count_for(self, queryset) -> int:
        rows = KindUsage.objects.filter(owner=self.request.user, place=KindUsage.Place.TRASH)
        return rows.aggregate(n=Sum("count"))["n"] or 0

    def list(self, request):
        """The trash, newest capture first, each with trashed_at; purged TRASH_DAYS after."""
        page = self.paginate_queryset(self.get_queryset())
        response = self.get_paginated_response(MediaSerializer(page, many=True).data)
        response.data["trash_days"] = settings.TRASH_DAYS
        return response


@extend_schema(summary="Bring media back from the trash", request=MediaIdsSerializer, responses=inline_serializer(
    "TrashRestored", {"restored": serializers.ListField(child=serializers.UUIDField())}))
@api_view(["POST"])
def restore(request):
    """{"media": [ids]} back to the library; an id not in the caller's trash is a 404."""
    data = MediaIdsSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    restored = trash_restore(owner=request.user, media=data.validated_data["media"])
    return Response({"restored": [str(pk) for pk in restored]})


@extend_schema(summary="Purge the whole trash now", request=None, responses=inline_serializer(
    "TrashEmptied", {"purged": serializers.IntegerField()}))
@api_view(["POST"])
def empty(request):
    """Purge the whole trash now: rows, variants and bytes; used_bytes drops by their sizes."""
    return Response({"purged": trash_empty(owner=request.user)})
