"""The list's JSON renderer (orjson) writes exactly what DRF's JSONRenderer writes."""

from __future__ import annotations


def test_the_fast_renderer_writes_what_drf_writes():
    from decimal import Decimal

    from rest_framework.renderers import JSONRenderer

    from media_api.renderers import FastJSONRenderer

    for data in ({"name": "été 📷 \u2028\u2029 \"q\" \\", "n": [1, 2.5, None, True], "d": {"x": ""}},
                 {"fallback": Decimal("1.5")}, [], {}):
        assert FastJSONRenderer().render(data) == JSONRenderer().render(data)
