"""The search page: results as the timeline's tiles, facet chips with counts; a chip is a link
that adds its filter, an active filter is a chip that removes it. No script needed."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from gallery.exceptions import InvalidInput
from gallery.models import Album
from search.documents import MONTHS
from search.lookup import search_media
from search.query import FACETS, FILTERS, SearchUnavailable, parse

PAGE_SIZE = 60
LABELS = {"kind": "Kind", "year": "Year", "month": "Month", "country": "Country", "city": "City",
          "camera": "Camera", "tag": "Tag", "album": "Album", "day": "Day", "favourite": "Favourite"}


def _url(pairs: list[tuple[str, str]]) -> str:
    return "?" + urlencode(pairs) if pairs else "?"


@login_required
def results(request):
    pairs = [(k, v) for k, values in request.GET.lists() for v in values if k != "cursor"]
    params = request.GET.copy()
    params.setdefault("page_size", str(PAGE_SIZE))
    params.setlist("facets", [",".join(FACETS)])
    context = {"q": request.GET.get("q", ""), "chips": [], "active": [], "media": [], "count": 0, "error": ""}
    try:
        query = parse(params)
        result, media = search_media(user=request.user, query=query)
    except (InvalidInput, SearchUnavailable) as exc:
        context["error"] = exc.detail
        return render(request, "search/results.html", context, status=exc.status)
    albums = dict(Album.objects.filter(owner=request.user, pk__in=[int(k) for k in result.facets.get("album", {})])
                  .values_list("pk", "title"))

    def label(name: str, value: str) -> str:
        if name == "month":
            return MONTHS[int(value) - 1].capitalize()
        if name == "album":
            return albums.get(int(value), f"album {value}")
        if name == "favourite":
            return "Favourites" if value in ("true", "True") else "Not favourites"
        return value

    for name in FILTERS:
        for value in request.GET.getlist(name):
            rest = [(k, v) for k, v in pairs if (k, v) != (name, value)]
            context["active"].append({"name": LABELS[name], "label": label(name, value) if value else value,
                                      "url": _url(rest)})
    for name in FACETS:
        values = [{"label": label(name, value), "count": n, "url": _url([*pairs, (name, value)])}
                  for value, n in result.facets.get(name, {}).items()
                  if (name, value) not in pairs]
        if name == "month":
            values.sort(key=lambda v: MONTHS.index(v["label"].lower()))
        if values:
            context["chips"].append({"name": LABELS[name], "values": values})
    context.update(media=media, count=result.count,
                   next_url=_url([*pairs, ("cursor", result.next_cursor.encode())]) if result.next_cursor else "")
    return render(request, "search/results.html", context)
