"""The search page: the header's box, tiles, facet chips with counts, a chip filters."""

from __future__ import annotations

import html
import re

from search import indexing


def chip_links(page: str) -> dict[str, str]:
    """Chip label (without its count) -> its link."""
    found = {}
    for url, text in re.findall(r'<a class="chip[^"]*" href="([^"]+)"[^>]*>(.*?)</a>', page, re.S):
        found[re.sub(r"<[^>]+>.*", "", text).strip()] = html.unescape(url)
    return found


def test_search_page_and_facets(client, alice, library):
    indexing.reindex()
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert 'role="search"' in page and 'action="/search/"' in page  # the header's box

    page = client.get("/search/?q=france").content.decode()
    assert "3 results for “france”" in page
    for name in ("IMG_20190704_181503.jpg", "DSC01234.JPG", "voice memo.m4a"):
        assert name in page
    assert "MyHolidayVideo.mp4" not in page
    chips = chip_links(page)
    assert 'Lyon <span class="n">1</span>' in page and 'Paris <span class="n">2</span>' in page
    assert "July" in chips and "Holidays" in chips  # months and albums by name

    page = client.get("/search/" + chips["Lyon"]).content.decode()  # clicking a chip filters
    assert "1 result for “france”" in page and "DSC01234.JPG" in page and "voice memo.m4a" not in page
    removes = chip_links(page)["City: Lyon ×"]
    assert "3 results" in client.get("/search/" + removes).content.decode()


def test_search_page_is_the_users_own(client, charlie, library):
    indexing.reindex()
    client.force_login(charlie)
    page = client.get("/search/?q=img").content.decode()
    assert "0 results" in page and "IMG_2019" not in page


def test_search_page_needs_a_login_and_names_bad_input(client, alice):
    assert client.get("/search/?q=x").status_code == 302
    client.force_login(alice)
    response = client.get("/search/?year=abc")
    assert response.status_code == 400 and "year: a whole number" in response.content.decode()
