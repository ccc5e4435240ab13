"""Fixtures shared by the upload tests (tus and its concatenation)."""

from __future__ import annotations

import pytest

from gallery.services.accounts import apikey_create


def key_for(user) -> str:
    """A read-write API key of `user`, raw."""
    return apikey_create(user=user, name="tus", scopes=["media.read", "media.read_write"])[1]


@pytest.fixture
def alice_key(alice) -> str:
    return key_for(alice)


@pytest.fixture
def endpoint(live_server) -> str:
    """The tus endpoint on a live server (real HTTP)."""
    return f"{live_server.url}/api/v1/uploads/"
