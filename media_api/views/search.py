"""GET /api/v1/search/: words, filters, facets and a cursor over the caller's library.

Parameters and answers: search.query (400 for anything wrong, naming the parameter); the
results are the library's media JSON, read through the visibility rule (search.lookup).
"""

from __future__ import annotations

from rest_framework.decorators import api_view, renderer_classes
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from gallery.models import Media
from media_api.renderers import FastJSONRenderer
from media_api.serializers import MediaSerializer
from media_api.views.media import as_rows, attach_relations
from search.lookup import search_media
from search.query import parse


@api_view(["GET"])
@renderer_classes([FastJSONRenderer])
def search(request):
    query = parse(request.query_params)
    rows = as_rows(Media.objects.visible_to(request.user))
    result, media = search_media(user=request.user, query=query, with_variants=False, media=rows)
    next_url = None
    if result.next_cursor is not None:
        next_url = replace_query_param(request.build_absolute_uri(), "cursor", result.next_cursor.encode())
    return Response({"count": result.count, "next": next_url, "facets": result.facets,
                     "results": MediaSerializer(attach_relations(media, owner=request.user), many=True).data})
