"""/api/v1/tags/: the caller's tags with how many visible media carry each; bulk tagging."""

from __future__ import annotations

from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.response import Response

from gallery.models import Media, Tag
from gallery.services.library import tags_change
from media_api.serializers import TagsBulkSerializer


@extend_schema(summary="The caller's tags with how many visible media carry each", responses=inline_serializer(
    "TagCount", {"name": serializers.CharField(), "count": serializers.IntegerField()}, many=True))
@api_view(["GET"])
def tag_list(request):
    """[{name, count}] by name; count is of visible media (trashed and vault ones are not)."""
    visible = Media.objects.visible_to(request.user).filter(tags=OuterRef("pk"))
    count = visible.order_by().values("tags").annotate(n=Count("pk")).values("n")
    rows = (Tag.objects.filter(owner=request.user).annotate(count=Coalesce(Subquery(count), 0))
            .values_list("name", "count"))
    return Response([{"name": name, "count": n} for name, n in sorted(rows, key=lambda row: row[0].casefold())])


@extend_schema(summary="Tag and untag media in bulk", request=TagsBulkSerializer, responses=inline_serializer(
    "TagsBulkDone", {"media": serializers.ListField(child=serializers.UUIDField())}))
@api_view(["POST"])
def tags_bulk(request):
    """{"media": [ids], "add": [names], "remove": [names]}: every id must be a visible media of
    the caller's (404 naming the others)."""
    data = TagsBulkSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    tags_change(owner=request.user, **data.validated_data)
    return Response({"media": [str(pk) for pk in dict.fromkeys(data.validated_data["media"])]})
