"""Documents and their words: names split as phones and cameras write them, local dates, synonyms."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gallery.models import Album, Media
from gallery.services.library import favourites_for
from search.documents import (
    SYNONYMS,
    build_document,
    documents_for,
    extension_of,
    fold,
    name_tokens,
    searchable_words,
    words,
)
from tests.search.conftest import make_media


@pytest.mark.parametrize("name,tokens", [
    ("IMG_20190704_181503.jpg", ["img", "20190704", "181503"]),
    ("PXL_20230115_093012345.MP.jpg", ["pxl", "20230115", "093012345", "mp"]),
    ("DSC01234.JPG", ["dsc01234", "dsc", "01234"]),
    ("MyHolidayPhoto.png", ["myholidayphoto", "my", "holiday", "photo"]),
    ("HTTPServerLog.txt", ["httpserverlog", "http", "server", "log"]),
    ("Screenshot 2024-03-01 at 10.22.11.png", ["screenshot", "2024", "03", "01", "at", "10", "22", "11"]),
    ("vacances-été_Zürich.HEIC", ["vacances", "ete", "zurich"]),
    ("WhatsApp Image 2021-05-02 at 18.04.33.jpeg", ["whatsapp", "whats", "app", "image", "2021", "05", "02",
                                                    "at", "18", "04", "33"]),
    ("noextension", ["noextension"]),
    (".hidden", ["hidden"]),
    ("", []),
])
def test_name_tokens(name, tokens):
    assert name_tokens(name) == tokens


def test_extension_and_words():
    assert extension_of("IMG_1.JPG") == "jpg"
    assert extension_of("noextension") == "" and extension_of(".hidden") == ""
    assert words("Île-de-France, São Paulo") == ["ile", "de", "france", "sao", "paulo"]
    assert fold("Straße") == "strasse"


def test_month_and_day_synonyms_both_ways():
    assert SYNONYMS["oct"] == ["october"] and SYNONYMS["october"] == ["oct"]
    assert set(SYNONYMS["september"]) == {"sep", "sept"} and "september" in SYNONYMS["sept"]
    assert SYNONYMS["sat"] == ["saturday"] and "thu" in SYNONYMS["thursday"]
    assert "may" not in SYNONYMS  # nothing shorter to say


def test_document_of_a_photo(alice):
    media = make_media(alice, "IMG_20190704_181503.jpg", datetime(2019, 7, 4, 16, 15, 3, tzinfo=UTC), offset=120,
                       place_city="Paris", place_region="Île-de-France", place_country="France",
                       camera_make="Canon", camera_model="Canon EOS 40D", latitude=48.85, longitude=2.35,
                       details={"lens": "EF-S 18-55mm", "description": "Fireworks over the Seine"})
    album = Album.objects.create(owner=alice, title="Summer")
    favourites = favourites_for(user=alice)
    doc = build_document(media, tags=["beach", "beach", "sea"], albums=[(favourites.pk, favourites.title), (album.pk, album.title)],
                         favourites_album_id=favourites.pk)
    assert doc["owner"] == str(alice.pk) and doc["kind"] == "image" and doc["id"] == str(media.pk)
    assert doc["name_tokens"] == ["img", "20190704", "181503"] and doc["extension"] == "jpg"
    # The local time of capture: 18:15 on Thursday 4 July 2019 (+02:00).
    assert (doc["year"], doc["month"], doc["month_name"], doc["day"]) == (2019, 7, "july", 4)
    assert (doc["weekday"], doc["weekday_name"], doc["date"]) == (4, "thursday", 20190704)
    assert doc["taken_at"] == int(datetime(2019, 7, 4, 16, 15, 3, tzinfo=UTC).timestamp())
    assert doc["taken_at_us"] == doc["taken_at"] * 1_000_000
    assert (doc["city"], doc["region"], doc["country"]) == ("Paris", "Île-de-France", "France")
    assert doc["camera"] == "Canon EOS 40D" and doc["lens"] == "EF-S 18-55mm"
    assert doc["tags"] == ["beach", "sea"]
    assert doc["albums"] == sorted([album.pk, favourites.pk]) and doc["album_titles"] == ["Summer"]
    assert doc["favourite"] is True
    assert doc["_geo"] == {"lat": 48.85, "lng": 2.35}
    assert doc["description"] == (getattr(media, "description", "") or "Fireworks over the Seine")
    found = searchable_words(doc)
    for word in ("img", "20190704", "jpg", "beach", "summer", "paris", "ile", "france", "canon", "eos", "40d",
                 "july", "thursday", "2019", "image", "18", "55mm", "fireworks", "seine"):
        assert word in found, word
    assert "favourites" not in found


def test_owner_zone_when_the_offset_is_unknown(alice, bob):
    # 23:30 UTC on New Year's Eve: 00:30 on 1 January in alice's Paris, still 2008 for bob (UTC).
    when = datetime(2008, 12, 31, 23, 30, tzinfo=UTC)
    for owner, year in ((alice, 2009), (bob, 2008)):
        doc = build_document(make_media(owner, "scan.pdf", when), tags=[], albums=[], favourites_album_id=None)
        assert doc["year"] == year
        assert "_geo" not in doc and doc["favourite"] is False


def test_documents_for_leaves_out_trash_vault_and_deleted(alice, django_assert_max_num_queries):
    kept = make_media(alice, "a.jpg", datetime(2020, 1, 1, tzinfo=UTC))
    trashed = make_media(alice, "b.jpg", datetime(2020, 1, 1, tzinfo=UTC), trashed_at=datetime(2020, 2, 1, tzinfo=UTC))
    vault = make_media(alice, "c.jpg", datetime(2020, 1, 1, tzinfo=UTC), in_vault=True)
    gone = "00000000-0000-0000-0000-000000000001"
    with django_assert_max_num_queries(3):
        docs, removed = documents_for([kept.pk, trashed.pk, vault.pk, gone])
    assert [d["id"] for d in docs] == [str(kept.pk)]
    assert removed == sorted([str(trashed.pk), str(vault.pk), gone])
    assert Media.objects.count() == 3
