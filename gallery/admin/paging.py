"""Counting rows for admin changelists without scanning a large table.

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

from django.core.paginator import Paginator
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
