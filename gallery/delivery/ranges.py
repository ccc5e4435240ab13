"""Conditional and range requests (RFC 9110 §13 and §14) for a byte sequence of known size.

Pure functions: no I/O (HTTP dates are Django's). `evaluate` decides the status, the byte ranges to send
and the response headers; gallery.delivery.views reads the bytes and sends them.

Choices where the RFC leaves room (each compared with nginx 1.22 in
tests/gallery/test_nginx_conformance.py):
- A Range header we cannot parse (unknown unit, bad syntax, first > last) is ignored and the
  whole representation is sent (200), as RFC 9110 §14.2 allows. nginx answers 416 to most
  of these; we prefer 200 because a broken header is the client's bug, not a range it asked for.
- Several ranges get a multipart/byteranges 206 laid out like nginx's; one satisfiable
  range among several gets a plain 206. Ranges are neither merged nor reordered, but more
  than MAX_RANGES ranges, or ranges adding up to more than the representation, get a full
  200 (RFC 9110 §17.15: cheap requests for huge multipart answers).
- HEAD answers exactly like GET without a body, Range included (206), as nginx does.
- If-Modified-Since with a date in the future is invalid and ignored (RFC 9110 §13.1.3),
  so nginx's default "exact" comparison and ours agree except for dates between the
  Last-Modified and now, where we answer 304 and nginx 200.
- If-None-Match takes precedence over If-Modified-Since and If-Match over
  If-Unmodified-Since (RFC 9110 §13.2.2); nginx requires both to pass.
- A zero-length representation ignores Range (200): "bytes 0--1/0" cannot be written.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from django.utils import http as django_http

MAX_RANGES = 64

_ETAG = re.compile(r'(W/)?("[\x21\x23-\x7e\x80-\xff]*")[ \t]*(?:,|$)')
# Whitespace around the dash is not in the grammar but nginx accepts it, and so do we.
_RANGE_SPEC = re.compile(r"(\d+)\s*-\s*(\d*)|-\s*(\d+)")


@dataclass(frozen=True)
class Representation:
    """What the validators and Content-* headers describe: `size` bytes of `content_type`."""

    size: int
    etag: str  # strong, quoted: '"abc"'
    last_modified: datetime  # aware
    content_type: str


@dataclass(frozen=True)
class Part:
    """One part of a multipart/byteranges body: `head` is written, then bytes first..last."""

    first: int
    last: int
    head: bytes


@dataclass
class Decision:
    """The answer: status, inclusive byte ranges to send, headers; multipart parts when several."""

    status: int
    ranges: list[tuple[int, int]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    parts: list[Part] = field(default_factory=list)
    trailer: bytes = b""

    @property
    def multipart(self) -> bool:
        return bool(self.parts)


def http_date(moment: datetime) -> str:
    """IMF-fixdate of an aware datetime, e.g. 'Sun, 06 Nov 1994 08:49:37 GMT'."""
    return django_http.http_date(moment.timestamp())


def parse_http_date(value: str) -> datetime | None:
    """The aware UTC datetime of an HTTP-date in any of the three formats; None if invalid."""
    seconds = django_http.parse_http_date_safe(value.strip())
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=timezone.utc)


def _etag_list(value: str) -> list[str] | None:
    """Entity-tags of an If-Match/If-None-Match value, "*" as ['*']; None when malformed."""
    if value.strip() == "*":
        return ["*"]
    tags, pos = [], 0
    while True:
        while pos < len(value) and value[pos] in " \t,":  # empty list elements are allowed
            pos += 1
        if pos == len(value):
            return tags
        m = _ETAG.match(value, pos)
        if m is None:
            return None
        tags.append((m.group(1) or "") + m.group(2))
        pos = m.end()


def _strong_match(a: str, b: str) -> bool:
    return not a.startswith("W/") and not b.startswith("W/") and a == b


def _weak_match(a: str, b: str) -> bool:
    return a.removeprefix("W/") == b.removeprefix("W/")


def _seconds(moment: datetime) -> datetime:
    # HTTP dates have one-second resolution; compare at that resolution.
    return moment.astimezone(timezone.utc).replace(microsecond=0)


def parse_range(value: str, size: int) -> list[tuple[int, int]] | None:
    """Satisfiable inclusive ranges of a Range value; None to ignore the header, [] for 416."""
    unit, eq, spec = value.partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return None
    elements = [e.strip(" \t") for e in spec.split(",")]
    elements = [e for e in elements if e]
    if not elements:
        return None
    ranges = []
    for element in elements:
        m = _RANGE_SPEC.fullmatch(element)
        if m is None:
            return None
        first_s, last_s, suffix_s = m.groups()
        if suffix_s is not None:
            length = int(suffix_s)
            if length > 0 and size > 0:
                ranges.append((max(0, size - length), size - 1))
            continue
        first = int(first_s)
        last = int(last_s) if last_s else None
        if last is not None and last < first:
            return None  # invalid range-spec: the whole header is ignored
        if first < size:
            ranges.append((first, size - 1 if last is None else min(last, size - 1)))
    return ranges


def _if_range_matches(value: str, rep: Representation) -> bool:
    value = value.strip()
    if value.startswith('"') or value.startswith("W/"):
        return _strong_match(value, rep.etag)
    date = parse_http_date(value)
    return date is not None and date == _seconds(rep.last_modified)


def _validators(rep: Representation) -> dict[str, str]:
    return {"ETag": rep.etag, "Last-Modified": http_date(rep.last_modified)}


def evaluate(method: str, headers: Mapping[str, str], rep: Representation,
             *, now: datetime | None = None) -> Decision:
    """Decide the answer to a GET or HEAD of `rep`, given the request headers (case-insensitive map)."""
    method = method.upper()
    safe = method in ("GET", "HEAD")
    now = now or datetime.now(timezone.utc)
    last_modified = _seconds(rep.last_modified)
    validators = _validators(rep)

    # RFC 9110 §13.2.2, steps 1 to 4.
    if_match = headers.get("If-Match")
    if if_match is not None:
        tags = _etag_list(if_match) or []
        if not any(t == "*" or _strong_match(t, rep.etag) for t in tags):
            return Decision(412, headers={"Content-Length": "0"})
    else:
        ius = parse_http_date(headers.get("If-Unmodified-Since") or "")
        if ius is not None and last_modified > ius:
            return Decision(412, headers={"Content-Length": "0"})

    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        tags = _etag_list(if_none_match) or []
        if any(t == "*" or _weak_match(t, rep.etag) for t in tags):
            if safe:
                return Decision(304, headers=validators)
            return Decision(412, headers={"Content-Length": "0"})
    elif safe:
        ims = parse_http_date(headers.get("If-Modified-Since") or "")
        if ims is not None and ims <= now and last_modified <= ims:
            return Decision(304, headers=validators)

    full = Decision(200, ranges=[(0, rep.size - 1)] if rep.size else [], headers={
        "Content-Type": rep.content_type,
        "Content-Length": str(rep.size),
        "Accept-Ranges": "bytes",
        **validators,
    })
    range_value = headers.get("Range")
    if not safe or range_value is None or rep.size == 0:
        return full
    if_range = headers.get("If-Range")
    if if_range is not None and not _if_range_matches(if_range, rep):
        return full

    ranges = parse_range(range_value, rep.size)
    if ranges is None:
        return full
    if not ranges:
        return Decision(416, headers={"Content-Range": f"bytes */{rep.size}", "Content-Length": "0",
                                      "Accept-Ranges": "bytes"})
    if len(ranges) > MAX_RANGES or sum(last - first + 1 for first, last in ranges) > rep.size:
        return full
    if len(ranges) == 1:
        first, last = ranges[0]
        return Decision(206, ranges=ranges, headers={
            "Content-Type": rep.content_type,
            "Content-Length": str(last - first + 1),
            "Content-Range": f"bytes {first}-{last}/{rep.size}",
            "Accept-Ranges": "bytes",
            **validators,
        })
    return _multipart(ranges, rep, validators)


def _multipart(ranges: list[tuple[int, int]], rep: Representation, validators: dict[str, str]) -> Decision:
    # Same layout as nginx: each part starts with CRLF, the body ends with the close delimiter.
    boundary = secrets.token_hex(12)
    parts = [
        Part(first, last, (f"\r\n--{boundary}\r\nContent-Type: {rep.content_type}\r\n"
                           f"Content-Range: bytes {first}-{last}/{rep.size}\r\n\r\n").encode("latin-1"))
        for first, last in ranges
    ]
    trailer = f"\r\n--{boundary}--\r\n".encode("ascii")
    length = sum(len(p.head) + p.last - p.first + 1 for p in parts) + len(trailer)
    return Decision(206, ranges=ranges, parts=parts, trailer=trailer, headers={
        "Content-Type": f"multipart/byteranges; boundary={boundary}",
        "Content-Length": str(length),
        "Accept-Ranges": "bytes",
        **validators,
    })
