"""Fixtures the delivery tests share."""

from __future__ import annotations

import pytest

from gallery.delivery import fast


@pytest.fixture
def lean():
    """The lean door alone, both of its lanes off: the reference the lanes must match."""
    door = fast.DeliveryApp(threads=1)
    door.express.reason_off = door.streams.reason_off = "the reference"
    yield door
    door.pool.shutdown()
