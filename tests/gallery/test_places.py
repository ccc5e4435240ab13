"""Offline reverse geocoding and time zones."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import reverse_geocode
from timezonefinder import TimezoneFinder

from gallery.processing import places
from gallery.processing.places import Place, place_at, timezone_at


@pytest.mark.parametrize(
    "lat, lon, place, zone",
    [
        # jpg/gps/DSCN0010.jpg (exiftool -n): Arezzo, Tuscany
        (43.4674483333333, 11.8851266666639, Place("Arezzo", "Tuscany", "Italy", "IT"), "Europe/Rome"),
        # heic/IMG_5195.HEIC (exiftool -n): east of Kansas City
        (
            39.0513444444444, -94.2887722222222,
            Place("Blue Springs", "Missouri", "United States", "US"), "America/Chicago",
        ),
        (51.5007, -0.1246, Place("London", "England", "United Kingdom", "GB"), "Europe/London"),
        # Buenos Aires: south and west; the nearest GeoNames entry is a barrio, so only the
        # country is pinned down here.
        (-34.6037, -58.3816, None, "America/Argentina/Buenos_Aires"),
    ],
)
def test_known_places(lat: float, lon: float, place: Place | None, zone: str) -> None:
    found = place_at(lat, lon)
    if place is not None:
        assert found == place
    else:
        assert found is not None and found.country == "Argentina"
    assert timezone_at(lat, lon) == zone


def test_open_ocean_has_no_place_but_a_nautical_zone() -> None:
    # Mid-Atlantic: the nearest GeoNames city is ~600 km away (Fernando de Noronha), so
    # place_at says None rather than a misleading name; the zone is the nautical GMT-2.
    assert place_at(0.0, -30.0) is None
    assert timezone_at(0.0, -30.0) == "Etc/GMT+2"


def test_far_from_any_city_is_none() -> None:
    # Libyan desert, ~250 km from the nearest town in the data.
    assert place_at(23.4162, 25.6628) is None
    assert timezone_at(23.4162, 25.6628) == "Africa/Cairo"


@pytest.mark.parametrize("lat, lon", [(91.0, 0.0), (0.0, 181.0), (float("nan"), 0.0)])
def test_invalid_coordinates(lat: float, lon: float) -> None:
    assert place_at(lat, lon) is None
    assert timezone_at(lat, lon) is None


def test_the_data_is_loaded_once_then_every_lookup_reuses_it(monkeypatch) -> None:
    # From a cold start (as in a new worker process), with threads racing for the first use.
    geocode_data = reverse_geocode.GeocodeData
    monkeypatch.setattr(places, "_finder", None)
    monkeypatch.setattr(reverse_geocode.Singleton, "_instances", {})
    loads = {"cities": 0, "zones": 0}
    extract, finder_init = geocode_data._extract, TimezoneFinder.__init__

    def counting_extract(self, *args, **kwargs):
        loads["cities"] += 1
        return extract(self, *args, **kwargs)

    def counting_finder_init(self, *args, **kwargs):
        loads["zones"] += 1
        finder_init(self, *args, **kwargs)

    monkeypatch.setattr(geocode_data, "_extract", counting_extract)
    monkeypatch.setattr(TimezoneFinder, "__init__", counting_finder_init)

    def lookups(offset: int) -> list:
        return [(place_at(40.0 + i / 100, 10.0 + offset + i / 100), timezone_at(40.0 + i / 100, 10.0 + i / 100))
                for i in range(100)]

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lookups, range(4)))
    assert sum(place is not None for answer in answers for place, _ in answer) > 50  # the data answers
    assert place_at(43.4674483, 11.8851267).city == "Arezzo" and timezone_at(43.4674483, 11.8851267) == "Europe/Rome"
    assert loads == {"cities": 1, "zones": 1}
