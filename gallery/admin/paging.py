"""Counting rows and listing dates for admin changelists without scanning a large table.

Django's changelist counts the filtered rows for its paginator (and, unless
show_full_result_count is False, the whole table again): two COUNT(*) that read every row
of a million-row media table. Here a count is:
- exact and free when the caller knows it (the media list, unfiltered or filtered by owner,
  kind, vault or trash, reads the KindUsage counters kept with the rows);
- otherwise counted up to CAP + 1 rows (`SELECT COUNT(*) FROM (... LIMIT 10001)`): exact for
  small results; past the cap it shows as "10,000+" and the last pages are reached by
  narrowing the filters or the search.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.core.paginator import Paginator
from django.db.models import Exists, Max, Min
from django.utils import timezone
from django.utils.functional import cached_property

CAP = 10_000


class AtLeast(int):
    """A count we stopped at: compares as the number, reads as "10,000+"."""

    def __str__(self) -> str:
        return f"{int(self) - 1:,}+"


class CheapCountPaginator(Paginator):
    def __init__(self, object_list, per_page, orphans=0, allow_empty_first_page=True, *, known_count=None):
        super().__init__(object_list, per_page, orphans, allow_empty_first_page)
        self.known_count = known_count

    @cached_property
    def count(self) -> int:
        if self.known_count is not None:
            return self.known_count
        found = self.object_list.order_by()[: CAP + 1].count()
        return AtLeast(found) if found > CAP else found


class DateProbes:
    """A QuerySet mixin for admin lists with a date_hierarchy on a large table.

    Django's date hierarchy lists the years (months, days) that have rows with
    `SELECT DISTINCT trunc(field)` over every filtered row; on SQLite the truncation is a
    Python function called once per row (seconds at 100,000 media). Here it is two queries
    whatever the number of rows: the first and last date (the ends of an index when nothing
    else filters, one query each), then one query that asks, for every year (month, day) between them, whether a row EXISTS in its
    range (an index probe each)."""

    probe_fields: tuple[str, ...] = ()
    MAX_PERIODS = 400

    def aggregate(self, *args, **kwargs):
        # The hierarchy first asks aggregate(first=Min(f), last=Max(f)). SQLite reads a lone
        # MIN or MAX from the end of an index but scans the table for both at once: ask twice.
        first, last = kwargs.get("first"), kwargs.get("last")
        if (not args and set(kwargs) == {"first", "last"} and type(first) is Min and type(last) is Max
                and first.source_expressions[0].name == last.source_expressions[0].name
                and first.source_expressions[0].name in self.probe_fields):
            return self._ends(first.source_expressions[0].name)
        return super().aggregate(*args, **kwargs)

    def _ends(self, field_name: str) -> dict:
        # Kept on this queryset: the hierarchy asks for the ends, then for the periods.
        if getattr(self.query, "skip_date_probes", False):
            return {"first": None, "last": None}  # no hierarchy (the media list while searching)
        cache = self.__dict__.setdefault("_date_ends", {})
        if field_name not in cache:
            plain = self.order_by()
            cache[field_name] = {"first": plain.aggregate(v=Min(field_name))["v"],
                                 "last": plain.aggregate(v=Max(field_name))["v"]}
        return cache[field_name]

    def datetimes(self, field_name, kind, order="ASC", tzinfo=None):
        if field_name not in self.probe_fields or kind not in ("year", "month", "day"):
            return super().datetimes(field_name, kind, order=order, tzinfo=tzinfo)
        zone = tzinfo or timezone.get_current_timezone()
        bounds = self._ends(field_name)
        if bounds["first"] is None:
            return []
        first, last = timezone.localtime(bounds["first"], zone), timezone.localtime(bounds["last"], zone)
        starts = _period_starts(first, last, kind, zone)
        if len(starts) > self.MAX_PERIODS:
            return super().datetimes(field_name, kind, order=order, tzinfo=tzinfo)
        ends = [*starts[1:], _next_period(starts[-1], kind, zone)]
        probes = {f"p{i}": Exists(self.order_by().filter(**{f"{field_name}__gte": s, f"{field_name}__lt": e}))
                  for i, (s, e) in enumerate(zip(starts, ends))}
        row = self.model._default_manager.order_by().annotate(**probes).values(*probes)[:1]
        found = row[0] if row else {}
        hits = [s for i, s in enumerate(starts) if found.get(f"p{i}")]
        return hits if order == "ASC" else hits[::-1]


def _period_starts(first: datetime, last: datetime, kind: str, zone) -> list[datetime]:
    current = _truncate(first, kind, zone)
    starts = []
    while current <= last and len(starts) <= DateProbes.MAX_PERIODS:
        starts.append(current)
        current = _next_period(current, kind, zone)
    return starts


def _truncate(moment: datetime, kind: str, zone) -> datetime:
    if kind == "year":
        return datetime(moment.year, 1, 1, tzinfo=zone)
    if kind == "month":
        return datetime(moment.year, moment.month, 1, tzinfo=zone)
    return datetime(moment.year, moment.month, moment.day, tzinfo=zone)


def _next_period(start: datetime, kind: str, zone) -> datetime:
    if kind == "year":
        return datetime(start.year + 1, 1, 1, tzinfo=zone)
    if kind == "month":
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        return datetime(year, month, 1, tzinfo=zone)
    following = start.date() + timedelta(days=1)
    return datetime(following.year, following.month, following.day, tzinfo=zone)
