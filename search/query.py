"""A search request, read and checked once (API and web page alike), and its answer.

Filters of the same name OR together, different names AND. Every problem is an InvalidInput
(400) naming the parameter.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Mapping

from gallery.exceptions import ChipmunkError, InvalidInput
from gallery.models import Media
from search.documents import words

FILTERS = ("kind", "year", "month", "day", "country", "city", "camera", "tag", "album", "favourite")
FACETS = ("kind", "year", "month", "country", "city", "camera", "tag", "album")
SORTS = ("-taken_at", "taken_at", "relevance")
PARAMS = {"q", *FILTERS, "from", "to", "near", "facets", "sort", "page_size", "cursor", "format"}
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 50, 200
MAX_VALUES, MAX_TERMS, MAX_Q = 50, 16, 500
MAX_FACET_VALUES = 100  # the most values a facet lists, largest counts first


class SearchUnavailable(ChipmunkError):
    """The search backend did not answer or did not do what was asked (jobs retry)."""

    code = "search_unavailable"
    status = 503


@dataclass(frozen=True)
class Cursor:
    sort: str
    offset: int = 0                 # relevance: where the next page starts
    taken_at_us: int | None = None  # taken_at sorts: the last row shown
    media_id: str | None = None

    def encode(self) -> str:
        body = {"s": self.sort, "o": self.offset} if self.sort == "relevance" else {
            "s": self.sort, "t": self.taken_at_us, "i": self.media_id}
        return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, raw: str) -> Cursor:
        try:
            body = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
            sort = body["s"]
            if sort == "relevance":
                offset = body["o"]
                if type(offset) is not int or not 0 <= offset <= 10**9:
                    raise ValueError(offset)
                return cls(sort=sort, offset=offset)
            if sort not in SORTS or type(body["t"]) is not int or abs(body["t"]) > 2**62:
                raise ValueError(body)
            return cls(sort=sort, taken_at_us=body["t"], media_id=str(uuid.UUID(body["i"])))
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError, AttributeError):
            raise InvalidInput("cursor: not a cursor this server handed out") from None


@dataclass(frozen=True)
class SearchQuery:
    q: str = ""
    filters: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    date_from: int | None = None    # local dates as yyyymmdd, both ends included
    date_to: int | None = None
    near: tuple[float, float, float] | None = None  # latitude, longitude, km
    facets: tuple[str, ...] = ()
    sort: str = "-taken_at"
    page_size: int = DEFAULT_PAGE_SIZE
    cursor: Cursor | None = None

    @property
    def terms(self) -> list[str]:
        return words(self.q)[:MAX_TERMS]


@dataclass
class SearchResult:
    ids: list[str]
    count: int
    facets: dict[str, dict[str, int]]
    next_cursor: Cursor | None = None


# --- Reading a request -----------------------------------------------------------------------
def _int(name: str, raw: str, low: int, high: int) -> int:
    if not raw.isascii() or not raw.strip().lstrip("-").isdigit() or len(raw) > 12:
        raise InvalidInput(f"{name}: a whole number from {low} to {high}, not {raw[:40]!r}")
    value = int(raw)
    if not low <= value <= high:
        raise InvalidInput(f"{name}: a whole number from {low} to {high}, not {value}")
    return value


def _text(name: str, raw: str) -> str:
    value = raw.strip()
    if not value or len(value) > 200 or not value.isprintable():
        raise InvalidInput(f"{name}: a non-empty value of at most 200 printable characters")
    return value


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise InvalidInput(f"{name}: true or false, not {raw[:40]!r}")


def _date(name: str, raw: str) -> int:
    try:
        day = date.fromisoformat(raw.strip())
    except ValueError:
        raise InvalidInput(f"{name}: a date as YYYY-MM-DD, not {raw[:40]!r}") from None
    return day.year * 10000 + day.month * 100 + day.day


def _kind(name: str, raw: str) -> str:
    if raw not in Media.Kind.values:
        raise InvalidInput(f"{name}: one of {', '.join(Media.Kind.values)}, not {raw[:40]!r}")
    return raw


_READERS = {
    "kind": _kind,
    "year": lambda n, r: _int(n, r, 1, 9999),
    "month": lambda n, r: _int(n, r, 1, 12),
    "day": lambda n, r: _int(n, r, 1, 31),
    "country": _text, "city": _text, "camera": _text, "tag": _text,
    "album": lambda n, r: _int(n, r, 1, 2**63 - 1),
    "favourite": _bool,
}


def _near(raw: str) -> tuple[float, float, float]:
    parts = raw.split(",")
    try:
        lat, lon, km = (float(p) for p in parts)
    except ValueError:
        raise InvalidInput("near: latitude,longitude,km (three numbers)") from None
    if not all(math.isfinite(v) for v in (lat, lon, km)):
        raise InvalidInput("near: latitude,longitude,km (three finite numbers)")
    if not -90 <= lat <= 90 or not -180 <= lon <= 180:
        raise InvalidInput("near: latitude from -90 to 90, longitude from -180 to 180")
    if not 0 < km <= 20_100:
        raise InvalidInput("near: a distance in km above 0 and at most 20100")
    return lat, lon, km


def parse(params: Mapping[str, Any]) -> SearchQuery:
    """A SearchQuery from query parameters (a QueryDict or a dict of lists); InvalidInput names
    the first parameter that is wrong."""
    def values(name: str) -> list[str]:
        got = params.getlist(name) if hasattr(params, "getlist") else params.get(name, [])
        got = [got] if isinstance(got, str) else list(got)
        if len(got) > MAX_VALUES:
            raise InvalidInput(f"{name}: at most {MAX_VALUES} values")
        return got

    def one(name: str) -> str | None:
        got = values(name)
        if len(got) > 1:
            raise InvalidInput(f"{name}: give it once")
        return got[0] if got else None

    unknown = sorted(set(params.keys()) - PARAMS)
    if unknown:
        raise InvalidInput(f"{unknown[0][:40]}: not a search parameter (known: {', '.join(sorted(PARAMS))})")
    q = one("q") or ""
    if len(q) > MAX_Q or "\x00" in q:
        raise InvalidInput(f"q: at most {MAX_Q} characters")
    filters: dict[str, tuple[Any, ...]] = {}
    for name in FILTERS:
        raw = values(name)
        if raw:
            filters[name] = tuple(dict.fromkeys(_READERS[name](name, r) for r in raw))
    date_from = _date("from", v) if (v := one("from")) is not None else None
    date_to = _date("to", v) if (v := one("to")) is not None else None
    if date_from is not None and date_to is not None and date_from > date_to:
        raise InvalidInput("from: after to")
    near = _near(v) if (v := one("near")) is not None else None
    facets: list[str] = []
    for raw in values("facets"):
        for name in filter(None, (p.strip() for p in raw.split(","))):
            if name not in FACETS:
                raise InvalidInput(f"facets: {name[:40]!r} is not one of {', '.join(FACETS)}")
            if name not in facets:
                facets.append(name)
    sort = one("sort")
    if sort is not None and sort not in SORTS:
        raise InvalidInput(f"sort: one of {', '.join(SORTS)}")
    if sort is None or (sort == "relevance" and not words(q)):
        # Without words every match is as relevant as the next: newest first.
        sort = "relevance" if words(q) else "-taken_at"
    page_size = _int("page_size", v, 1, MAX_PAGE_SIZE) if (v := one("page_size")) is not None else DEFAULT_PAGE_SIZE
    cursor = Cursor.decode(v) if (v := one("cursor")) else None
    if cursor is not None and cursor.sort != sort:
        raise InvalidInput("cursor: it belongs to another sort order")
    return SearchQuery(q=q, filters=filters, date_from=date_from, date_to=date_to, near=near,
                       facets=tuple(facets), sort=sort, page_size=page_size, cursor=cursor)
