"""The database backend's own choices, beyond the contract: on PostgreSQL the last word of a
query, a prefix, is looked up as the whole words it stands for (search_word) unless there are
too many; either way the answer is the prefix match's."""

from __future__ import annotations

import pytest
from django.db import connection
from django.http import QueryDict

from search import db
from search.db import DatabaseBackend
from search.query import parse

QUERIES = [
    "q=holi",
    "q=fr",
    "q=2019",
    "q=IMG_2019",
    "q=img",
    "q=o",
    "q=zzz",
    "q=qx",  # no word starts with it: nothing
    "q=paris holi",
    "q=thu",
    "q=oc&kind=video",
    "q=ja&year=2009&facets=kind,year,month,city,tag,album",
]


def answer(backend, params: str, owner) -> tuple:
    result = backend.search(parse(QueryDict(params)), owner_id=str(owner.pk))
    return result.ids, result.count, result.facets


def test_prefix_as_words_answers_as_the_prefix_match(
    library, alice, settings, monkeypatch
):
    from search.indexing import reindex

    settings.SEARCH_BACKEND = "db"
    backend = DatabaseBackend()
    reindex(backend=backend)
    expanded = [answer(backend, q, alice) for q in QUERIES]
    monkeypatch.setattr(db, "PREFIX_WORDS", 0)  # every prefix with a word is "too many"
    assert [answer(backend, q, alice) for q in QUERIES] == expanded
    assert (
        expanded[0][1] == 3
        and expanded[1][1] == 4
        and expanded[6][1] == expanded[7][1] == 0
    )


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="search_word is PostgreSQL's"
)
def test_words_follow_the_documents(library, alice, bob):
    from search.indexing import reindex

    reindex(backend=DatabaseBackend())
    with connection.cursor() as cursor:
        cursor.execute("SELECT word FROM search_word WHERE owner_id = %s", [alice.pk])
        words = {row[0] for row in cursor.fetchall()}
    assert {"holiday", "october", "20190704", "france", "beach"} <= words
    assert "bob" not in words  # bob's file name is his
    assert db._prefix_words(str(alice.pk), "holi") == ["holiday", "holidays"]
    assert (
        db._prefix_words(str(alice.pk), "Holi") is None
    )  # not a folded word: the prefix match decides
