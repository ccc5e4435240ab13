"""What the Meilisearch backend sends, built by pure functions and checked without a server
(none can run where this was written; tests/search/test_contract.py runs the real thing when
MEILISEARCH_URL is set)."""

from __future__ import annotations

import uuid

from django.http import QueryDict

from search.documents import SYNONYMS, id_key
from search.meili import (
    ATTRIBUTES,
    FILTERABLE,
    SEARCHABLE,
    SORTABLE,
    base_filter,
    index_settings,
    meili_document,
    quote,
    result_from,
    search_requests,
)
from search.query import MAX_FACET_VALUES, Cursor, parse

OWNER = "0b5f3c1e-6a53-4f7e-9a65-2f1f0c7d9e11"


def q(text: str):
    return parse(QueryDict(text))


def test_settings():
    settings = index_settings()
    assert settings["searchableAttributes"] == SEARCHABLE
    assert settings["synonyms"] == SYNONYMS and settings["synonyms"]["oct"] == ["october"]
    # Everything a query filters or facets on, the owner and the keyset fields among them.
    for attribute in ("owner", "id", "_geo", "date", "taken_at_us", "id_key", "indexed_at", *ATTRIBUTES.values()):
        assert attribute in settings["filterableAttributes"]
    assert settings["filterableAttributes"] == FILTERABLE
    assert set(SORTABLE) >= {"taken_at_us", "id_key"}
    assert settings["rankingRules"][0] == "sort"
    assert settings["typoTolerance"]["disableOnNumbers"] is True
    assert settings["faceting"] == {"maxValuesPerFacet": MAX_FACET_VALUES, "sortFacetValuesBy": {"*": "count"}}
    assert settings["pagination"]["maxTotalHits"] >= 10**7
    assert index_settings() == settings  # the same every time: applying it twice changes nothing


def test_quote():
    assert quote("Paris") == '"Paris"'
    assert quote('say "cheese" \\o/') == '"say \\"cheese\\" \\\\o/"'
    assert quote(2019) == "2019" and quote(True) == "true" and quote(False) == "false"


def test_filter_always_starts_with_the_owner():
    assert base_filter(q(""), owner_id=OWNER) == [f'owner = "{OWNER}"']


def test_filters_or_within_a_name_and_between_names():
    query = q("kind=image&kind=video&year=2019&tag=beach&tag=sea+side&city=S%C3%A3o+Paulo&favourite=true"
              "&album=7&from=2019-07-01&to=2019-07-31&near=48.85,2.35,1.5")
    assert base_filter(query, owner_id=OWNER) == [
        f'owner = "{OWNER}"',
        'kind IN ["image", "video"]',
        "year = 2019",
        'city = "São Paulo"',
        'tags IN ["beach", "sea side"]',
        "albums = 7",
        "favourite = true",
        "date >= 20190701",
        "date <= 20190731",
        "_geoRadius(48.85, 2.35, 1500)",
    ]


def test_an_injected_value_stays_a_value():
    clauses = base_filter(q('tag=x" OR owner = "someone'), owner_id=OWNER)
    assert clauses[1] == 'tags = "x\\" OR owner = \\"someone"'


def test_requests_count_and_facets_then_a_page():
    counting, page = search_requests(q("q=Beach+Oct%C3%B3ber&facets=year,tag&page_size=20"), owner_id=OWNER,
                                     index_uid="media")
    assert counting == {"indexUid": "media", "q": "beach october", "filter": [f'owner = "{OWNER}"'],
                        "matchingStrategy": "all", "page": 1, "hitsPerPage": 0, "facets": ["year", "tags"]}
    assert page == {"indexUid": "media", "q": "beach october", "matchingStrategy": "all",
                    "attributesToRetrieve": ["id", "taken_at_us"], "limit": 21, "offset": 0,
                    "filter": [f'owner = "{OWNER}"']}


def test_time_sorted_pages_use_a_keyset():
    media_id = str(uuid.uuid4())
    cursor = Cursor(sort="-taken_at", taken_at_us=1_562_256_903_000_000, media_id=media_id).encode()
    _, page = search_requests(q(f"kind=image&cursor={cursor}"), owner_id=OWNER, index_uid="media")
    key = id_key(media_id)
    assert page["sort"] == ["taken_at_us:desc", "id_key:desc"]
    assert page["filter"] == [f'owner = "{OWNER}"', 'kind = "image"',
                              f"(taken_at_us < 1562256903000000 OR (taken_at_us = 1562256903000000 AND id_key < {key}))"]
    _, page = search_requests(q("sort=taken_at"), owner_id=OWNER, index_uid="media")
    assert page["sort"] == ["taken_at_us:asc", "id_key:asc"] and "offset" not in page


def test_relevance_pages_use_an_offset():
    cursor = Cursor(sort="relevance", offset=40).encode()
    _, page = search_requests(q(f"q=beach&cursor={cursor}&page_size=20"), owner_id=OWNER, index_uid="media")
    assert page["offset"] == 40 and page["limit"] == 21 and "sort" not in page


def test_id_key_orders_like_the_id():
    ids = sorted(uuid.uuid4() for _ in range(200))
    keys = [id_key(i) for i in ids]
    assert keys == sorted(keys) and all(k < 2**53 for k in keys)


def test_answers():
    query = q("facets=year,tag,album&page_size=2")
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    counting = {"totalHits": 12, "facetDistribution": {"year": {"2019": 10, "2008": 2}, "tags": {"beach": 3}}}
    page = {"hits": [{"id": a, "taken_at_us": 30}, {"id": b, "taken_at_us": 20}, {"id": c, "taken_at_us": 10}]}
    result = result_from([counting, page], query)
    assert result.ids == [a, b] and result.count == 12
    assert result.facets == {"year": {"2019": 10, "2008": 2}, "tag": {"beach": 3}, "album": {}}
    assert result.next_cursor == Cursor(sort="-taken_at", taken_at_us=20, media_id=b)
    last = result_from([counting, {"hits": page["hits"][:2]}], query)
    assert last.next_cursor is None


def test_document_leaves_out_empty_texts():
    doc = {"id": "x", "owner": OWNER, "city": "", "country": "France", "tags": [], "favourite": False}
    assert meili_document(doc, indexed_at=1.5) == {"id": "x", "owner": OWNER, "country": "France", "tags": [],
                                                   "favourite": False, "indexed_at": 1.5}
