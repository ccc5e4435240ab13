"""Login throttling (gallery.throttle): per account and per client address, in windows."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from gallery import throttle

pytestmark = pytest.mark.django_db
WRONG = {"username": "alice", "password": "wrong"}
RIGHT = {"username": "alice", "password": "alice-password"}


@pytest.fixture(autouse=True)
def clock(monkeypatch, settings):
    """Time stands at the start of a window until a test moves it."""
    # Autouse, so before the cast is created: a fast hasher for the many guesses here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.THROTTLE_RULES = {"login-account": (5, 60), "login-address": (20, 60)}
    cache.clear()
    moment = {"now": 6000.0}
    monkeypatch.setattr(throttle, "now", lambda: moment["now"])
    yield moment
    cache.clear()


def logged_in(client) -> bool:
    return client.get("/").status_code == 200


@pytest.mark.parametrize("door", ["/login/", "/admin/login/"])
def test_wrong_passwords_then_429_even_for_the_right_one_until_the_window_ends(client, alice, clock, door):
    alice.is_staff = True
    alice.save()
    for _ in range(5):
        response = client.post(door, WRONG)
        assert response.status_code == 200 and b"Please" in response.content
    refused = client.post(door, RIGHT)
    assert refused.status_code == 429 and refused["Retry-After"] == "60"
    assert not logged_in(client)
    clock["now"] += 45
    assert client.post(door, RIGHT)["Retry-After"] == "15"
    clock["now"] += 15
    assert client.post(door, RIGHT).status_code == 302
    assert logged_in(client)


def test_both_doors_count_for_the_same_account(client, alice):
    alice.is_staff = True
    alice.save()
    for door in ["/login/", "/admin/login/"] * 2 + ["/login/"]:
        assert client.post(door, WRONG).status_code == 200
    assert client.post("/admin/login/", RIGHT).status_code == 429


def test_another_account_and_another_address_are_unaffected(client, alice, bob):
    for _ in range(5):
        client.post("/login/", WRONG, REMOTE_ADDR="198.51.100.7")
    # bob from the same address: that address has 5 of its 20.
    assert client.post("/login/", {"username": "bob", "password": "bob-password"},
                       REMOTE_ADDR="198.51.100.7").status_code == 302
    client.logout()
    # alice's account stays throttled from any address (the username is the key, case aside).
    assert client.post("/login/", {"username": "ALICE ", "password": "alice-password"},
                       REMOTE_ADDR="203.0.113.9").status_code == 429


def test_one_address_guessing_many_accounts_is_throttled(client, alice, bob):
    for number in range(20):
        assert client.post("/login/", {"username": f"user{number}", "password": "x"},
                           REMOTE_ADDR="198.51.100.7").status_code == 200
    assert client.post("/login/", {"username": "bob", "password": "bob-password"},
                       REMOTE_ADDR="198.51.100.7").status_code == 429
    assert client.post("/login/", {"username": "bob", "password": "bob-password"},
                       REMOTE_ADDR="203.0.113.9").status_code == 302


def test_a_login_page_is_still_shown_while_throttled(client, alice):
    for _ in range(5):
        client.post("/login/", WRONG)
    assert client.get("/login/").status_code == 200


def test_the_rule_for_other_doors(settings, clock):
    settings.THROTTLE_RULES = {**settings.THROTTLE_RULES, "vault-unlock": (2, 300)}
    assert throttle.throttle_check("vault-unlock", "alice") == 0
    throttle.throttle_fail("vault-unlock", "alice")
    assert throttle.throttle_check("vault-unlock", "alice") == 0
    throttle.throttle_fail("vault-unlock", "alice")
    assert throttle.throttle_check("vault-unlock", "alice") == 300 - 6000 % 300
    assert throttle.throttle_check("vault-unlock", "bob") == 0
    assert throttle.throttle_check("login-account", "alice") == 0  # scopes count apart
    clock["now"] += 300
    assert throttle.throttle_check("vault-unlock", "alice") == 0
