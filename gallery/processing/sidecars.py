"""Sidecar files beside a media: XMP (IMG_1.jpg.xmp, IMG_1.xmp) and Google Takeout's JSON.

What a sidecar says is kept as one JSON-safe dict in Media.details["sidecar"], which the
pipeline reads at step 6 of the date precedence (gallery.processing.dates) and for the
position, description, rating and keywords a file lacks; processing again keeps it.

Google Takeout names its JSON after the media, with quirks this module knows:
- `IMG_1.jpg.json`, or since 2024 `IMG_1.jpg.supplemental-metadata.json`;
- the "(1)" rule: the second `IMG_1.jpg` of a folder is saved as `IMG_1(1).jpg` but its
  JSON is `IMG_1.jpg(1).json` (`IMG_1.jpg.supplemental-metadata(1).json`);
- long names: the JSON's name is cut to 46/47 characters before `.json`, anywhere (in the
  name, in the extension, in "supplemental-metadata");
- `IMG_1-edited.jpg` (the edited copy) has no JSON of its own: it shares IMG_1.jpg's;
- the video of a Live Photo (`IMG_1.MP4`) shares the photo's (`IMG_1.HEIC.json`).
An album folder has a `metadata.json` whose `title` names the album.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gallery.processing.xmp import DATE_PROPERTIES, XmpData, XmpDate, read_xmp_sidecar

MAX_JSON = 1024 * 1024  # a Takeout sidecar is a few KB; more is not one
SUPPLEMENTAL = ".supplemental-metadata"
# Takeout cuts the JSON's name (without ".json") to this many characters or one more.
TRUNCATED_LENGTH = 46
EDITED_SUFFIXES = ("-edited", "-bearbeitet", "-modifié", "-editado", "-modificato", "-bewerkt")
_NAME = re.compile(r"^(?P<stem>.*?)(?P<dup>\(\d+\))?(?P<ext>\.[^.]*)?$", re.DOTALL)
_JSON = re.compile(r"^(?P<stem>.*?)(?P<dup>\(\d+\))?$", re.DOTALL)
_YEAR_FOLDER = re.compile(r"^Photos from \d{4}$")


def is_sidecar_name(name: str) -> bool:
    """Files that describe media rather than being media."""
    return name.lower().endswith((".json", ".xmp"))


def xmp_sidecar_for(media: Path, names: set[str]) -> str | None:
    """The XMP sidecar of a media among the file names of its folder: IMG_1.jpg.xmp, else IMG_1.xmp
    (any case of the extension)."""
    lowered = {n.lower(): n for n in names if n.lower().endswith(".xmp")}
    for candidate in (f"{media.name}.xmp", f"{media.stem}.xmp"):
        found = lowered.get(candidate.lower())
        if found:
            return found
    return None


@dataclass
class JsonIndex:
    """The Takeout JSON files of one folder, indexed for the name rules above."""

    names: set[str] = field(default_factory=set)  # names without ".json"
    by_key: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)  # key -> (stem, dup, name)

    @classmethod
    def of(cls, file_names: set[str]) -> JsonIndex:
        index = cls()
        for name in file_names:
            if not name.lower().endswith(".json") or name == "metadata.json":
                continue
            base = name[:-5]
            index.names.add(base)
            match = _JSON.match(base)
            stem, dup = match.group("stem"), match.group("dup") or ""
            index.by_key.setdefault(_key(stem), []).append((stem, dup, name))
        return index

    def sidecar_for(self, media_name: str) -> str | None:
        """The JSON file name of a media, or None."""
        match = _NAME.match(media_name)
        stem, dup, ext = match.group("stem"), match.group("dup") or "", match.group("ext") or ""
        stems = [stem, *(stem[: -len(s)] for s in EDITED_SUFFIXES if stem.endswith(s) and len(stem) > len(s))]
        exact = [media_name + SUPPLEMENTAL, media_name]
        for base in stems:
            exact += [f"{base}{ext}{SUPPLEMENTAL}{dup}", f"{base}{ext}{dup}", f"{base}{dup}"]
        for candidate in exact:
            if candidate in self.names:
                return candidate + ".json"
        for base in stems:
            found = self._truncated(f"{base}{ext}", dup) or self._other_extension(base, dup)
            if found:
                return found
        return None

    def _truncated(self, full: str, dup: str) -> str | None:
        """A cut name: "<full>.supplemental-me" or the first 46/47 characters of <full>."""
        target = full + SUPPLEMENTAL
        best: tuple[int, str] | None = None
        for stem, jdup, name in self.by_key.get(_key(full), []):
            if jdup != dup or not target.startswith(stem):
                continue
            if stem.startswith(full + ".") or len(stem) >= TRUNCATED_LENGTH - 5:
                if best is None or len(stem) > best[0]:
                    best = (len(stem), name)
        return best[1] if best else None

    def _other_extension(self, stem: str, dup: str) -> str | None:
        """A Live Photo's video: IMG_1.MP4 described by IMG_1.HEIC(.supplemental-metadata).json."""
        for jstem, jdup, name in sorted(self.by_key.get(_key(stem), [])):
            rest = jstem[len(stem):] if jstem.startswith(stem + ".") else ""
            if jdup == dup and rest and "." not in rest[1:].replace(SUPPLEMENTAL, ""):
                return name
        return None


def _key(name: str) -> str:
    return name.split(".")[0][:30]


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        if os.path.getsize(path) > MAX_JSON:
            return None
        with open(path, "rb") as fh:
            data = json.loads(fh.read().decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def album_title(folder: Path) -> str | None:
    """The album a Takeout folder stands for: the `title` of its metadata.json (not the
    "Photos from 2019" year folders, which are no albums)."""
    data = _load_json(folder / "metadata.json")
    title = data.get("title") if data else None
    if not isinstance(title, str) or not title.strip() or _YEAR_FOLDER.match(title.strip()):
        return None
    return title.strip()[:200]


def takeout_sidecar(path: Path) -> dict[str, Any]:
    """What a Takeout JSON says about its media, in Media.details["sidecar"]'s shape ({} if nothing)."""
    data = _load_json(path)
    if data is None:
        return {}
    found: dict[str, Any] = {}
    taken = data.get("photoTakenTime")
    try:
        timestamp = int(str(taken.get("timestamp"))) if isinstance(taken, dict) else None
    except ValueError:
        timestamp = None
    if timestamp is not None and timestamp > 0:
        found["taken_timestamp"] = timestamp
    for key in ("geoData", "geoDataExif"):  # where the user put it on the map, else the camera's
        position = _position(data.get(key))
        if position:
            found.update(position)
            break
    description = data.get("description")
    if isinstance(description, str) and description.strip():
        found["description"] = description.strip()[:5000]
    if data.get("favorited") is True:
        found["favourite"] = True
    return found


def _position(geo: Any) -> dict[str, float] | None:
    if not isinstance(geo, dict):
        return None
    lat, lon, alt = geo.get("latitude"), geo.get("longitude"), geo.get("altitude")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lat, lon)):
        return None
    if (lat == 0 and lon == 0) or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None  # Takeout writes 0,0 for "no position"
    position = {"latitude": float(lat), "longitude": float(lon)}
    if isinstance(alt, (int, float)) and not isinstance(alt, bool) and alt != 0 and -20_000 < alt < 100_000:
        position["altitude"] = float(alt)
    return position


def xmp_sidecar(path: Path) -> dict[str, Any]:
    """What an XMP sidecar says, in Media.details["sidecar"]'s shape ({} if nothing)."""
    data: XmpData = read_xmp_sidecar(path)
    found: dict[str, Any] = {}
    dates = [[name, _date_text(data.dates[name])] for name in DATE_PROPERTIES if name in data.dates]
    if dates:
        found["xmp_dates"] = dates
    if data.latitude is not None and data.longitude is not None:
        found.update(latitude=data.latitude, longitude=data.longitude)
        if data.altitude is not None:
            found["altitude"] = data.altitude
    if data.description:
        found["description"] = data.description
    if data.subjects:
        found["tags"] = data.subjects
    if data.rating is not None:
        found["rating"] = data.rating
    return found


def _date_text(date: XmpDate) -> str:
    if not date.has_time:
        return date.value.date().isoformat()
    text = date.value.isoformat()
    if date.offset_minutes is not None:
        sign = "-" if date.offset_minutes < 0 else "+"
        text += f"{sign}{abs(date.offset_minutes) // 60:02d}:{abs(date.offset_minutes) % 60:02d}"
    return text


def merged(*parts: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """One sidecar dict from several (name, dict) in order of trust: the first to say a thing wins,
    dates and tags are kept from all. Records which files contributed in `sources`."""
    result: dict[str, Any] = {}
    for name, part in parts:
        if not part:
            continue
        result.setdefault("sources", []).append(name)
        for key, value in part.items():
            if key in ("xmp_dates", "tags"):
                result[key] = [*result.get(key, []), *value]
            elif key in ("latitude", "longitude", "altitude"):
                continue
            else:
                result.setdefault(key, value)
        if "latitude" in part and "latitude" not in result:  # a position is taken whole
            result.update({k: part[k] for k in ("latitude", "longitude", "altitude") if k in part})
    return result
