"""Fixtures shared by the upload tests (tus and its concatenation)."""

from __future__ import annotations

import pytest

from gallery.services.accounts import apikey_create


def key_for(user) -> str:
    """A read-write API key of `user`, raw."""
    return apikey_create(user=user, name="tus", scopes=["media.read", "media.read_write"])[1]


@pytest.fixture
def alice_key(alice) -> str:
    return key_for(alice)


@pytest.fixture
def endpoint(live_server) -> str:
    """The tus endpoint on a live server (real HTTP)."""
    return f"{live_server.url}/api/v1/uploads/"


@pytest.fixture
def make_media():
    """make_media(user, n=1, when=None) -> [Media]: small documents stored through the one
    ingest path (media_ingest), so every counter is kept as in production."""
    import io
    import uuid

    from gallery.services.media import media_ingest

    def _make(user, n: int = 1, *, when=None, size: int = 10, name: str = "note.txt"):
        made = []
        for _ in range(n):
            data = uuid.uuid4().hex.encode()[:size].ljust(size, b"x")
            made.append(media_ingest(owner=user, stream=io.BytesIO(data), size=len(data), filename=name,
                                     file_modified_at=when).media)
        return made

    return _make


def recount(user) -> dict:
    """The counters recomputed from the rows: what KindUsage, TimelineDay and used_bytes must say."""
    from collections import Counter

    from gallery.models import KindUsage, Media, TimelineDay, User

    usage, days = Counter(), Counter()
    for m in Media.objects.filter(owner=user):
        usage[(m.kind, KindUsage.place_of(m), "count")] += 1
        usage[(m.kind, KindUsage.place_of(m), "bytes")] += m.size
        if KindUsage.place_of(m) == KindUsage.Place.LIBRARY:
            days[m.taken_day] += 1
    kept = Counter()
    for row in KindUsage.objects.filter(owner=user):
        kept[(row.kind, row.place, "count")] += row.count
        kept[(row.kind, row.place, "bytes")] += row.bytes
    kept_days = Counter({row.day: row.count for row in TimelineDay.objects.filter(owner=user)})

    def nonzero(counter):  # a counter row at 0 is the same as none; a negative one is an error
        return {k: v for k, v in counter.items() if v != 0}

    return {
        "usage_ok": nonzero(kept) == nonzero(usage), "days_ok": nonzero(kept_days) == nonzero(days),
        "used_ok": User.objects.get(pk=user.pk).used_bytes == sum(m.size for m in Media.objects.filter(owner=user)),
    }


def counters_exact(user) -> bool:
    return all(recount(user).values())


def queries_of(call) -> int:
    """How many queries `call()` makes, the second time (the first may record the API key's
    last use). The log is emptied first: it keeps at most 9,000 entries, and a full one
    makes CaptureQueriesContext count zero."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    call()
    connection.queries_log.clear()
    with CaptureQueriesContext(connection) as context:
        call()
    return len(context)
