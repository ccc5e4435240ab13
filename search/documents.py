"""What search knows of a media: one document, built the same way for every backend.

A document holds the owner, kind and type; the file name's tokens; the capture time as a
timestamp and as local year, month, day and weekday (the local time of capture: the recorded
offset, else the owner's zone); place, camera, lens, tags, albums, favourite, description and
the position. Vault and trashed media have no document (`indexable`).

Text is normalised here for the database backend (lower case, accents removed, words of
letters or digits); Meilisearch gets the same words and normalises them itself.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import UTC, datetime
from typing import Any, Iterable, TypedDict

from gallery.models import Album, Media

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# Short forms of month and day names. Meilisearch gets them as its synonyms; the database
# backend expands a query word into its synonyms. Both directions are listed.
_SHORT = {
    "january": ["jan"], "february": ["feb"], "march": ["mar"], "april": ["apr"], "june": ["jun"],
    "july": ["jul"], "august": ["aug"], "september": ["sep", "sept"], "october": ["oct"],
    "november": ["nov"], "december": ["dec"],
    "monday": ["mon"], "tuesday": ["tue", "tues"], "wednesday": ["wed"], "thursday": ["thu", "thur", "thurs"],
    "friday": ["fri"], "saturday": ["sat"], "sunday": ["sun"],
}


def _synonyms() -> dict[str, list[str]]:
    table: dict[str, set[str]] = {}
    for full, shorts in _SHORT.items():
        group = {full, *shorts}
        for word in group:
            table.setdefault(word, set()).update(group - {word})
    return {word: sorted(others) for word, others in sorted(table.items())}


SYNONYMS: dict[str, list[str]] = _synonyms()


class Document(TypedDict, total=False):
    id: str
    owner: str
    kind: str
    content_type: str
    name: str
    name_tokens: list[str]
    extension: str
    taken_at: int           # Unix seconds (UTC)
    taken_at_us: int        # Unix microseconds: the sort key, with id_key breaking ties
    id_key: int             # the id's top 53 bits: sorts like the id, exact in a float
    date: int               # local date as yyyymmdd (from/to)
    year: int
    month: int
    month_name: str
    day: int
    weekday: int            # 1 = Monday .. 7 = Sunday
    weekday_name: str
    city: str
    region: str
    country: str
    camera: str
    lens: str
    tags: list[str]
    albums: list[int]
    album_titles: list[str]
    favourite: bool
    description: str
    _geo: dict[str, float]


# --- Words ---------------------------------------------------------------------------------
_WORD = re.compile(r"[^\W_]+")


def fold(text: str) -> str:
    """Lower case without accents: "Zürich" -> "zurich" (what both indexes compare)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def words(text: str) -> list[str]:
    """The words of a text: runs of letters or digits, folded; separators are everything else."""
    return _WORD.findall(fold(text or ""))


def _pieces(word: str) -> list[str]:
    """A word split at camelCase and letter/digit boundaries: "DSCF1234" -> DSCF, 1234;
    "MyHolidayPhoto" -> My, Holiday, Photo; "HTTPServer" -> HTTP, Server."""
    pieces: list[str] = []
    start = 0
    for i in range(1, len(word)):
        prev, ch = word[i - 1], word[i]
        nxt = word[i + 1] if i + 1 < len(word) else ""
        boundary = (
            (prev.isdigit() != ch.isdigit())
            or (prev.islower() and ch.isupper())
            or (prev.isupper() and ch.isupper() and nxt.islower())
        )
        if boundary:
            pieces.append(word[start:i])
            start = i
    pieces.append(word[start:])
    return pieces


def name_tokens(filename: str) -> list[str]:
    """The words of a file name without its extension, split at separators, camelCase and
    letter/digit boundaries (a word that splits is kept whole too, so "dsc01234" matches):
    IMG_20190704_181503.jpg -> img, 20190704, 181503."""
    stem = filename.rsplit(".", 1)[0] if "." in filename.strip(".") else filename
    tokens: list[str] = []
    for raw in _WORD.findall(unicodedata.normalize("NFKC", stem)):
        pieces = _pieces(raw)
        for token in ([raw] if len(pieces) > 1 else []) + pieces:
            folded = fold(token)
            if folded and folded not in tokens:
                tokens.append(folded)
    return tokens


def extension_of(filename: str) -> str:
    stem, dot, ext = filename.rpartition(".")
    return fold(ext) if dot and stem and _WORD.fullmatch(ext) else ""


# --- Documents -----------------------------------------------------------------------------
def indexable(media: Media) -> bool:
    """Only the library is searchable: trashed media leave the index, vault media never enter it."""
    return media.trashed_at is None and not media.in_vault


def id_key(media_id: Any) -> int:
    """The top 53 bits of a UUID: orders like the UUID and is exact as a JSON number."""
    return uuid.UUID(str(media_id)).int >> 75


def build_document(media: Media, *, tags: Iterable[str], albums: Iterable[tuple[int, str]],
                   favourites_album_id: int | None) -> Document:
    """The document of one media (owner loaded for its time zone) with its tag names and its
    albums as (id, title); a pure function of its inputs."""
    local = media.taken_at_local()
    album_list = sorted(set(albums))
    album_ids = [album_id for album_id, _ in album_list]
    doc: Document = {
        "id": str(media.pk),
        "owner": str(media.owner_id),
        "kind": media.kind,
        "content_type": media.content_type,
        "name": media.original_filename,
        "name_tokens": name_tokens(media.original_filename),
        "extension": extension_of(media.original_filename),
        "taken_at": int(media.taken_at.timestamp()),
        "taken_at_us": _micros(media.taken_at),
        "id_key": id_key(media.pk),
        "date": local.year * 10000 + local.month * 100 + local.day,
        "year": local.year,
        "month": local.month,
        "month_name": MONTHS[local.month - 1],
        "day": local.day,
        "weekday": local.isoweekday(),
        "weekday_name": WEEKDAYS[local.weekday()],
        "city": media.place_city,
        "region": media.place_region,
        "country": media.place_country,
        "camera": media.camera,
        "lens": str((media.details or {}).get("lens") or "")[:200],
        "tags": sorted(set(tags)),
        "albums": album_ids,
        # Favourites is a flag (`favourite`), not words.
        "album_titles": [title for album_id, title in album_list if album_id != favourites_album_id],
        "favourite": favourites_album_id is not None and favourites_album_id in album_ids,
        # A description field (the library issue), else what the file's metadata said.
        "description": str(getattr(media, "description", "") or (media.details or {}).get("description") or "")[:5000],
    }
    if media.latitude is not None and media.longitude is not None:
        doc["_geo"] = {"lat": media.latitude, "lng": media.longitude}
    return doc


def _micros(when: datetime) -> int:
    delta = when.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def searchable_words(doc: Document) -> list[str]:
    """The words a query matches in the database backend: the same attributes Meilisearch
    searches (search.meili.SEARCHABLE), folded and split alike."""
    parts: list[str] = [*doc["name_tokens"], doc["extension"]]
    for text in (*doc["tags"], *doc["album_titles"], doc["description"], doc["city"], doc["region"],
                 doc["country"], doc["camera"], doc["lens"], doc["month_name"], doc["weekday_name"],
                 str(doc["year"]), doc["kind"]):
        parts.extend(words(text))
    seen: dict[str, None] = {}
    for word in parts:
        if word:
            seen.setdefault(word, None)
    return list(seen)


def documents_for(media_ids: Iterable[Any]) -> tuple[list[Document], list[str]]:
    """Documents of these media that are indexable, and the ids to remove from the index
    (deleted, trashed or in the vault). Reads in a constant number of queries."""
    wanted = {str(i) for i in media_ids}
    rows = list(Media.objects.filter(pk__in=wanted).select_related("owner").defer("exif"))
    return documents_from(rows, wanted)


def documents_from(rows: list[Media], wanted: set[str] | None = None) -> tuple[list[Document], list[str]]:
    """Documents of loaded media (owner selected); see documents_for. Tags and albums are read
    as plain values in two queries (model instances for them cost more than the rest)."""
    ids = [m.pk for m in rows if indexable(m)]
    tags: dict[Any, list[str]] = {}
    for media_id, name in Media.tags.through.objects.filter(media_id__in=ids).values_list("media_id", "tag__name"):
        tags.setdefault(media_id, []).append(name)
    albums: dict[Any, list[tuple[int, str]]] = {}
    favourites: dict[Any, int] = {}
    for media_id, album_id, title, is_favourites, owner_id in Album.media.through.objects.filter(
            media_id__in=ids).values_list("media_id", "album_id", "album__title", "album__is_favourites",
                                          "album__owner_id"):
        albums.setdefault(media_id, []).append((album_id, title))
        if is_favourites:
            favourites[owner_id] = album_id
    docs: list[Document] = []
    gone = set(wanted or ())
    for media in rows:
        if indexable(media):
            gone.discard(str(media.pk))
            docs.append(build_document(media, tags=tags.get(media.pk, []), albums=albums.get(media.pk, []),
                                       favourites_album_id=favourites.get(media.owner_id)))
    return docs, sorted(gone)
