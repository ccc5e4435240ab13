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


def door_fixtures(spy):
    """A test module's `app` and `threaded_app` fixtures: the lean door with its lanes (on
    SQLite on the event loop; `threaded_app` always in a delivery thread, PostgreSQL's way),
    each spied on by the module's `spy`. Use: `app, threaded_app = door_fixtures(spied)`."""

    @pytest.fixture
    def app():
        door = spy(fast.DeliveryApp(threads=2))
        yield door
        door.pool.shutdown()

    @pytest.fixture
    def threaded_app(settings):
        settings.DELIVERY_INLINE = False
        door = spy(fast.DeliveryApp(threads=2))
        yield door
        door.pool.shutdown()

    return app, threaded_app


def loop_door() -> tuple[fast.DeliveryApp, list]:
    """A door whose lane decides on the event loop, and the list of what its pool is handed
    (a hop to a delivery thread each). Only SQLite's lane has the loop's own connection:
    elsewhere the test is skipped (`make test` runs it on SQLite)."""
    door = fast.DeliveryApp(threads=1)
    if not door.express.inline:
        door.pool.shutdown()
        pytest.skip("the event loop's own connection is for SQLite")
    submitted = []
    real_submit = door.pool.submit
    door.pool.submit = lambda *a, **k: submitted.append(a[0]) or real_submit(*a, **k)
    return door, submitted
