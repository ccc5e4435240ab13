"""The list's JSON renderer (orjson) writes exactly what DRF's JSONRenderer writes."""

from __future__ import annotations


def test_the_fast_renderer_writes_what_drf_writes():
    from decimal import Decimal

    from rest_framework.renderers import JSONRenderer

    from media_api.renderers import FastJSONRenderer

    for data in ({"name": "été 📷 \u2028\u2029 \"q\" \\", "n": [1, 2.5, None, True], "d": {"x": ""}},
                 {"fallback": Decimal("1.5")}, [], {}):
        assert FastJSONRenderer().render(data) == JSONRenderer().render(data)


def test_media_dates_are_written_as_drfs_datetime_field_writes_them():
    from datetime import UTC, datetime, timedelta, timezone

    from django.utils import timezone as django_timezone
    from rest_framework import serializers

    from media_api.serializers import MediaSerializer

    moments = [datetime(2024, 5, 17, 12, 3, 4, tzinfo=UTC), datetime(2024, 5, 17, 12, 3, 4, 120, tzinfo=UTC),
               datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-7))),
               datetime(2024, 3, 31, 0, 30, tzinfo=UTC)]
    for zone in ("UTC", "Europe/Paris", "America/St_Johns"):
        with django_timezone.override(zone):
            field = serializers.DateTimeField(default_timezone=django_timezone.get_current_timezone())
            text = MediaSerializer()._date_text
            assert [text(moment) for moment in moments] == [field.to_representation(m) for m in moments]
