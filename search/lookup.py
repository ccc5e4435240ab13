"""Searching for a user: the backend finds ids, the one visibility rule decides what is shown."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from gallery.models import Media, Variant
from search.backends import get_backend
from search.query import SearchQuery, SearchResult


def search_media(*, user, query: SearchQuery, variant_fields: tuple[str, ...] | None = None,
                 with_variants: bool = True, media: QuerySet | None = None) -> tuple[SearchResult, list[Media]]:
    """The backend's answer for `user` and the page's media in its order, read through
    Media.objects.visible_to(user): an index a moment behind never shows what the user may
    no longer see (trashed, vault, deleted). `media`, without variants, is the queryset to read
    them from instead (the API's rows); it must come from Media.objects.visible_to(user)."""
    if not getattr(user, "is_authenticated", False):
        return SearchResult(ids=[], count=0, facets={}), []
    result = get_backend().search(query, owner_id=str(user.pk))
    variants = Variant.objects.only(*variant_fields) if variant_fields else Variant.objects.all()
    if media is not None:
        rows = media.filter(pk__in=result.ids)
    else:
        rows = Media.objects.visible_to(user).filter(pk__in=result.ids).select_related("owner").defer("exif", "details")
    if with_variants:  # the API attaches variants, albums and tags itself (one query each)
        rows = rows.prefetch_related(Prefetch("variants", queryset=variants))
    by_id = {str(m.pk): m for m in rows}
    return result, [by_id[i] for i in result.ids if i in by_id]
