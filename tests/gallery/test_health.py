from __future__ import annotations

import pytest

from tests.conftest import MotoServer, free_port, use_storage

pytestmark = pytest.mark.django_db


def test_health_reports_every_part(admin_client, storage):
    response = admin_client.get("/health/")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) >= {"database", "storage", "task_queue", "channel_layer", "search"}
    assert all(part["ok"] for part in body["checks"].values())
    assert body["checks"]["storage"]["backend"] == storage
    cache = body["checks"]["blob_cache"]
    assert cache["enabled"] is True and {"hits", "misses", "entries", "bytes"} <= set(cache)


def test_health_is_503_when_object_storage_stops(admin_client, settings):
    client = admin_client
    server = MotoServer().start()
    use_storage(settings, server.storage_config(server.new_bucket()))
    assert client.get("/health/").status_code == 200
    server.stop()
    response = client.get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["storage"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


@pytest.fixture
def database_gone(tmp_path):
    """The default connection pointed at a database that is not there, through the real driver:
    SQLite at a file in a directory that does not exist, PostgreSQL at a port nobody listens on."""
    from django.db import connections

    original = connections["default"]
    unreachable = dict(original.settings_dict)
    if original.vendor == "sqlite":
        unreachable["NAME"] = str(tmp_path / "no-such-dir" / "db.sqlite3")
    else:
        options = {k: v for k, v in unreachable.get("OPTIONS", {}).items() if k != "pool"}  # no 30 s pool wait
        unreachable.update(HOST="127.0.0.1", PORT=str(free_port()), OPTIONS={**options, "connect_timeout": 3})
    gone = original.__class__(unreachable, alias="default")
    connections["default"] = gone
    try:
        yield
    finally:
        connections["default"] = original
        gone.close()


def test_health_is_503_when_the_database_does_not_answer(client, database_gone, settings):
    # The token, not a staff session, shows the details: a session needs the database.
    settings.HEALTH_TOKEN = "ops-token"
    response = client.get("/health/", HTTP_AUTHORIZATION="Bearer ops-token")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"] is False
    assert body["checks"]["database"]["error"].startswith("OperationalError")
    assert body["checks"]["storage"]["ok"] is True  # the database alone is down


def test_health_is_503_when_local_storage_is_not_writable(client, settings, tmp_path):
    from config.settings import local_storage_config

    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o500)
    use_storage(settings, local_storage_config(root))
    try:
        import os

        if os.geteuid() == 0:
            # root writes anywhere: make the location a file instead, which no one can write into.
            root.chmod(0o700)
            root.rmdir()
            root.write_text("not a directory")
        response = client.get("/health/")
    finally:
        if root.is_dir():
            root.chmod(0o700)
    assert response.status_code == 503
    assert response.json()["checks"]["storage"]["ok"] is False


def test_health_channel_layer_with_redis(admin_client, settings):
    client = admin_client
    import os

    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        pytest.skip("REDIS_URL not set (CI sets it)")
    settings.REDIS_URL = redis_url
    part = client.get("/health/").json()["checks"]["channel_layer"]
    assert part["ok"] is True and part["backend"] == "redis"
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/health/")
    assert response.status_code == 503
    assert response.json()["checks"]["channel_layer"]["ok"] is False


def test_anonymous_callers_see_status_and_ok_only(client, alice):
    body = client.get("/health/").json()
    assert body["status"] == "ok"
    assert body["checks"] and all(part == {"ok": True} for part in body["checks"].values())
    client.force_login(alice)  # a user who is not staff is anonymous here
    assert all(part == {"ok": True} for part in client.get("/health/").json()["checks"].values())


def test_a_failing_part_shows_no_error_to_anonymous_callers(client, admin_client, settings, tmp_path):
    from config.settings import local_storage_config

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    use_storage(settings, local_storage_config(blocker / "media"))
    anonymous = client.get("/health/")
    assert anonymous.status_code == 503
    assert anonymous.json()["checks"]["storage"] == {"ok": False}
    assert "error" in admin_client.get("/health/").json()["checks"]["storage"]


def test_the_health_token_shows_the_details(client, settings):
    settings.HEALTH_TOKEN = "s3cret-health-token"
    detailed = client.get("/health/", HTTP_AUTHORIZATION="Bearer s3cret-health-token").json()["checks"]
    assert "vendor" in detailed["database"] and "enabled" in detailed["blob_cache"]
    assert "vendor" in client.get("/health/?token=s3cret-health-token").json()["checks"]["database"]
    for wrong in ({"HTTP_AUTHORIZATION": "Bearer s3cret-health-tokeN"}, {"QUERY_STRING": "token=s3cret"},
                  {"QUERY_STRING": "token="}):
        assert client.get("/health/", **wrong).json()["checks"]["database"] == {"ok": True}


def test_no_health_token_configured_means_no_token_works(client, settings):
    settings.HEALTH_TOKEN = ""
    assert client.get("/health/?token=").json()["checks"]["database"] == {"ok": True}
    assert client.get("/health/", HTTP_AUTHORIZATION="Bearer ").json()["checks"]["database"] == {"ok": True}
