"""The media JSON built from plain values (a page of the list, and MediaSerializer itself) is
exactly what DRF's declared fields make of the model object, for media of every shape."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework import serializers

from gallery.models import Media, Variant
from gallery.services.media import usage_add
from media_api.serializers import MediaSerializer, values_supported

pytestmark = pytest.mark.django_db


def through_fields(media: Media) -> dict:
    """DRF's own representation: every declared field's to_representation."""
    return serializers.ModelSerializer.to_representation(MediaSerializer(), media)


@pytest.fixture
def shapes(alice) -> list[Media]:
    moment = datetime(2024, 5, 1, 12, 0, 7, 123456, tzinfo=timezone.utc)
    made = [
        Media(owner=alice, original_filename="bare.bin", sha256="a" * 64, size=1, kind="other"),
        Media(owner=alice, original_filename="été 📷.jpg", sha256="b" * 64, size=2_500_000, kind="image",
              status="ready", taken_at=moment, taken_at_offset_minutes=-330, taken_at_estimated=False,
              width=4000, height=3000, latitude=48.8566, longitude=2.3522, altitude=35.5, place_city="Paris",
              place_region="Île-de-France", place_country="France", camera_make="Canon",
              camera_model="Canon EOS 40D"),
        Media(owner=alice, original_filename="clip.mp4", sha256="c" * 64, size=10, kind="video", status="failed",
              error="cannot decode", taken_at=moment, duration=12.5, camera_make=" Apple ", camera_model="iPhone 12",
              place_country="Iceland"),
    ]
    Media.objects.bulk_create(made)
    for media in made:
        usage_add(media=media, count=1)
    for level, size in (("3s", 3686), ("1", 900), ("6", 200_000)):
        Variant.objects.create(media=made[1], level=level, width=160, height=160, size=size,
                               content_type="image/webp", storage_key=f"k/{level}")
    return made


def test_the_values_json_is_the_fields_json(alice, shapes, alice_api):
    assert values_supported()
    listed = {item["id"]: item for item in alice_api.get("/api/v1/media/?page_size=10").json()["results"]}
    for media in shapes:
        media = Media.objects.select_related("owner").prefetch_related("variants").get(pk=media.pk)
        expected = through_fields(media)
        assert MediaSerializer(media).data == expected
        assert listed[str(media.pk)] == expected
        assert alice_api.get(f"/api/v1/media/{media.pk}/").json() == expected


def test_a_page_is_four_queries_whatever_its_size(alice, shapes, alice_api):
    """The credential, the counters, the page of values, its variants: no object per media."""
    for size in (1, 3):
        with CaptureQueriesContext(connection) as queries:
            assert len(alice_api.get(f"/api/v1/media/?page_size={size}").json()["results"]) == size
        reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
        assert len(reads) == 4, reads


def test_a_field_it_was_not_taught_goes_back_to_drf(alice, shapes, alice_api, monkeypatch):
    monkeypatch.setattr(MediaSerializer.Meta, "fields", [*MediaSerializer.Meta.fields[:-1]])
    assert not values_supported()
    item = alice_api.get("/api/v1/media/?page_size=10").json()["results"][0]
    assert "trashed_at" not in item and "variants" in item


def test_the_fast_renderer_writes_what_drf_writes():
    from decimal import Decimal

    from rest_framework.renderers import JSONRenderer

    from media_api.renderers import FastJSONRenderer

    for data in ({"name": "été 📷 \u2028\u2029 \"q\" \\", "n": [1, 2.5, None, True], "d": {"x": ""}},
                 {"fallback": Decimal("1.5")}, [], {}):
        assert FastJSONRenderer().render(data) == JSONRenderer().render(data)
