"""Offline place names and time zones for GPS positions.

Both lookups ship their data in the wheel (GeoNames cities for reverse_geocode, zone
polygons for timezonefinder), so no network is needed. Importing this module (scipy) and the
first lookup cost ~1.5 s of CPU, then each answers in microseconds; a lock makes the load
happen once per process, and the pipeline imports the module only for a media with a position.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import reverse_geocode
from timezonefinder import TimezoneFinder

# The nearest GeoNames city is returned however far away it is; past this distance the
# name would mislead (a photo mid-Atlantic is not "in Fernando de Noronha").
MAX_CITY_DISTANCE_KM = 100.0

_lock = threading.Lock()
_finder: TimezoneFinder | None = None


@dataclass
class Place:
    city: str
    region: str  # state / province / region, "" when GeoNames has none
    country: str
    country_code: str = ""  # ISO 3166-1 alpha-2


def place_at(lat: float, lon: float) -> Place | None:
    """The nearest known city to a position, or None at sea or far from any city."""
    if not _valid(lat, lon):
        return None
    if _at_sea(lat, lon):
        return None
    with _lock:
        found = reverse_geocode.get((lat, lon))
    if not found or _distance_km(lat, lon, found["latitude"], found["longitude"]) > MAX_CITY_DISTANCE_KM:
        return None
    return Place(
        city=found.get("city") or "",
        region=found.get("state") or found.get("county") or "",
        country=found.get("country") or "",
        country_code=found.get("country_code") or "",
    )


def timezone_at(lat: float, lon: float) -> str | None:
    """IANA zone name at a position ("Europe/Rome"); at sea a nautical "Etc/GMT+N" zone."""
    if not _valid(lat, lon):
        return None
    global _finder
    with _lock:
        if _finder is None:
            _finder = TimezoneFinder()
        try:
            return _finder.timezone_at(lat=lat, lng=lon)
        except ValueError:
            return None


def _at_sea(lat: float, lon: float) -> bool:
    # timezonefinder covers land plus territorial waters with real zones; only open sea
    # falls into the Etc/GMT±N nautical zones, so it doubles as a cheap land mask.
    zone = timezone_at(lat, lon)
    return zone is not None and zone.startswith("Etc/")


def _valid(lat: float, lon: float) -> bool:
    return (
        math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180
    )


def _distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    # Haversine on a spherical Earth: plenty for a 100 km cut-off.
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))
