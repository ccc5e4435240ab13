"""gallery.delivery.ranges.evaluate: RFC 9110 conditional and range requests, without Django."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gallery.delivery.ranges import MAX_RANGES, Representation, evaluate, http_date, parse_http_date, parse_range

LM = datetime(2024, 5, 17, 10, 30, 15, 123456, tzinfo=timezone.utc)
NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)
REP = Representation(size=1000, etag='"abc123"', last_modified=LM, content_type="image/jpeg")


def ev(headers: dict[str, str] | None = None, method: str = "GET", rep: Representation = REP):
    return evaluate(method, headers or {}, rep, now=NOW)


def test_plain_get_is_full_200_with_validators():
    d = ev()
    assert d.status == 200
    assert d.ranges == [(0, 999)]
    assert d.headers == {
        "Content-Type": "image/jpeg", "Content-Length": "1000", "Accept-Ranges": "bytes",
        "ETag": '"abc123"', "Last-Modified": "Fri, 17 May 2024 10:30:15 GMT",
    }


def test_head_has_the_same_headers_as_get():
    assert ev(method="HEAD").headers == ev().headers
    assert ev({"Range": "bytes=0-9"}, method="HEAD").headers == ev({"Range": "bytes=0-9"}).headers


@pytest.mark.parametrize(("spec", "first", "last"), [
    ("bytes=0-0", 0, 0),
    ("bytes=0-499", 0, 499),
    ("bytes=500-", 500, 999),
    ("bytes=-500", 500, 999),
    ("bytes=-1", 999, 999),
    ("bytes=-5000", 0, 999),      # suffix longer than the file: all of it
    ("bytes=900-5000", 900, 999),  # last beyond the end is clipped
    ("bytes=999-999", 999, 999),
    ("BYTES=10-19", 10, 19),      # range units are case-insensitive
    ("bytes=10 - 19", 10, 19),    # whitespace around the dash, as nginx accepts
    ("bytes=,10-19,", 10, 19),    # empty list elements
])
def test_single_ranges(spec, first, last):
    d = ev({"Range": spec})
    assert d.status == 206
    assert d.ranges == [(first, last)]
    assert d.headers["Content-Range"] == f"bytes {first}-{last}/1000"
    assert d.headers["Content-Length"] == str(last - first + 1)
    assert d.headers["Content-Type"] == "image/jpeg"
    assert d.headers["ETag"] == '"abc123"'
    assert not d.multipart


@pytest.mark.parametrize("spec", ["bytes=1000-", "bytes=1000-2000", "bytes=-0", "bytes=5000-5001,1000-"])
def test_unsatisfiable_is_416_with_star_content_range(spec):
    d = ev({"Range": spec})
    assert d.status == 416
    assert d.headers["Content-Range"] == "bytes */1000"
    assert d.headers["Content-Length"] == "0"
    assert d.ranges == []


@pytest.mark.parametrize("spec", [
    "bytes=abc", "bytes=", "bytes=5-3", "bytes=1-2-3", "bytes=--5", "items=0-5", "0-5", "bytes 0-5",
    "bytes=0-5;x", "bytes=0x10-20",
])
def test_malformed_range_is_ignored(spec):
    d = ev({"Range": spec})
    assert d.status == 200
    assert d.ranges == [(0, 999)]


def test_multiple_ranges_are_multipart_in_request_order():
    d = ev({"Range": "bytes=500-599,0-9,-10"})
    assert d.status == 206
    assert d.multipart
    assert d.ranges == [(500, 599), (0, 9), (990, 999)]
    content_type = d.headers["Content-Type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    boundary = content_type.split("boundary=")[1]
    assert d.parts[0].head == (f"\r\n--{boundary}\r\nContent-Type: image/jpeg\r\n"
                               f"Content-Range: bytes 500-599/1000\r\n\r\n").encode()
    assert [p.head.decode().split("Content-Range: ")[1].strip() for p in d.parts] == [
        "bytes 500-599/1000", "bytes 0-9/1000", "bytes 990-999/1000"]
    assert d.trailer == f"\r\n--{boundary}--\r\n".encode()
    body_length = sum(len(p.head) + p.last - p.first + 1 for p in d.parts) + len(d.trailer)
    assert d.headers["Content-Length"] == str(body_length)
    assert "Content-Range" not in d.headers


def test_boundaries_differ_between_answers():
    a, b = ev({"Range": "bytes=0-1,5-6"}), ev({"Range": "bytes=0-1,5-6"})
    assert a.headers["Content-Type"] != b.headers["Content-Type"]


def test_one_satisfiable_range_among_several_is_a_single_part():
    d = ev({"Range": "bytes=2000-3000,10-19"})
    assert d.status == 206 and not d.multipart
    assert d.headers["Content-Range"] == "bytes 10-19/1000"


def test_too_many_or_too_much_is_a_full_200():
    many = ",".join(f"{i}-{i}" for i in range(0, 2 * (MAX_RANGES + 1), 2))
    assert ev({"Range": f"bytes={many}"}).status == 200
    # Overlapping ranges asking for more than the whole file: the whole file, once.
    assert ev({"Range": "bytes=0-999,0-999"}).status == 200
    assert ev({"Range": "bytes=0-499,400-899"}).status == 206


def test_empty_representation_ignores_range():
    empty = Representation(size=0, etag='"e"', last_modified=LM, content_type="text/plain")
    d = ev({"Range": "bytes=0-"}, rep=empty)
    assert d.status == 200 and d.ranges == [] and d.headers["Content-Length"] == "0"


# --- Conditional requests ----------------------------------------------------------------
@pytest.mark.parametrize("inm", ['"abc123"', 'W/"abc123"', '"x", "abc123"', "*", ' "zzz" ,W/"abc123" '])
def test_if_none_match_hit_is_304(inm):
    d = ev({"If-None-Match": inm, "Range": "bytes=0-10"})
    assert d.status == 304
    assert d.headers == {"ETag": '"abc123"', "Last-Modified": "Fri, 17 May 2024 10:30:15 GMT"}
    assert d.ranges == []


@pytest.mark.parametrize("inm", ['"other"', 'W/"other"', "garbage", '"abc123'])
def test_if_none_match_miss_is_200(inm):
    assert ev({"If-None-Match": inm}).status == 200


def test_if_none_match_on_unsafe_method_is_412():
    assert ev({"If-None-Match": "*"}, method="PUT").status == 412


def test_if_modified_since():
    assert ev({"If-Modified-Since": http_date(LM)}).status == 304
    assert ev({"If-Modified-Since": http_date(LM + timedelta(days=1))}).status == 304
    assert ev({"If-Modified-Since": http_date(LM - timedelta(seconds=1))}).status == 200
    # A date after "now" is invalid, so ignored.
    assert ev({"If-Modified-Since": http_date(NOW + timedelta(days=1))}).status == 200
    assert ev({"If-Modified-Since": "yesterday"}).status == 200


def test_if_none_match_takes_precedence_over_if_modified_since():
    past = http_date(LM - timedelta(days=1))
    assert ev({"If-None-Match": '"abc123"', "If-Modified-Since": past}).status == 304
    assert ev({"If-None-Match": '"nope"', "If-Modified-Since": http_date(LM)}).status == 200


@pytest.mark.parametrize(("im", "status"), [
    ('"abc123"', 200), ("*", 200), ('"a", "abc123"', 200),
    ('W/"abc123"', 412),  # If-Match uses the strong comparison
    ('"other"', 412),
])
def test_if_match(im, status):
    assert ev({"If-Match": im}).status == status


def test_if_unmodified_since():
    assert ev({"If-Unmodified-Since": http_date(LM)}).status == 200
    assert ev({"If-Unmodified-Since": http_date(LM - timedelta(seconds=1))}).status == 412
    assert ev({"If-Unmodified-Since": "not a date"}).status == 200
    # If-Match, when present, decides alone.
    assert ev({"If-Match": '"abc123"', "If-Unmodified-Since": http_date(LM - timedelta(days=1))}).status == 200


def test_precondition_failure_beats_range():
    d = ev({"If-Match": '"other"', "Range": "bytes=0-1"})
    assert d.status == 412 and d.ranges == []


@pytest.mark.parametrize(("if_range", "status"), [
    ('"abc123"', 206),
    ('"other"', 200),
    ('W/"abc123"', 200),  # a weak validator never matches If-Range
    (http_date(LM), 206),
    (http_date(LM + timedelta(seconds=1)), 200),  # a date must match exactly
    ("garbage", 200),
])
def test_if_range(if_range, status):
    d = ev({"Range": "bytes=0-9", "If-Range": if_range})
    assert d.status == status
    assert d.ranges == ([(0, 9)] if status == 206 else [(0, 999)])


def test_if_range_without_range_is_ignored():
    assert ev({"If-Range": '"other"'}).status == 200


# --- Dates -------------------------------------------------------------------------------
def test_http_date_formats():
    expected = datetime(1994, 11, 6, 8, 49, 37, tzinfo=timezone.utc)
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == expected
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == expected
    assert parse_http_date("Sun Nov  6 08:49:37 1994") == expected
    assert parse_http_date("Sun, 31 Feb 1994 08:49:37 GMT") is None
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 CET") is None
    assert http_date(expected) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert http_date(datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))) == \
        "Tue, 02 Jan 2024 01:04:05 GMT"


def test_parse_range_contract():
    assert parse_range("bytes=0-1,-2", 10) == [(0, 1), (8, 9)]
    assert parse_range("bytes=20-", 10) == []
    assert parse_range("bytes=x", 10) is None
