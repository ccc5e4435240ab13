"""manage.py setplan and deleteuser --purge."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from gallery.models import ApiKey, Media, User, Variant
from gallery.storage import blob_list, media_storage

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_setplan(alice, settings):
    settings.QUOTA_PLANS = {"free": 10 * 10**9, "plus": 150 * 10**9}
    out = run("setplan", "alice", "plus")
    alice.refresh_from_db()
    assert alice.plan == "plus" and "personal quota" in out  # alice has one: it still decides
    run("setplan", "alice", "plus", "--clear-quota")
    alice.refresh_from_db()
    assert alice.personal_quota_bytes is None and alice.quota_bytes == 150 * 10**9
    with pytest.raises(CommandError, match="no plan named 'gold'"):
        run("setplan", "alice", "gold")
    with pytest.raises(CommandError, match="no user"):
        run("setplan", "nobody", "plus")


@pytest.fixture
def two_libraries(storage, alice, bob, alice_api, bob_api, upload, corpus):
    assert upload(alice_api, corpus / "jpg" / "Canon_40D.jpg").status_code == 201
    assert upload(alice_api, name="a.txt", data=b"alice's text").status_code == 201
    assert upload(bob_api, corpus / "jpg" / "Nikon_D70.jpg").status_code == 201
    return storage


def test_deleteuser_purge_removes_rows_and_blobs_of_that_user_only(two_libraries, alice, bob):
    bob_blobs = sorted(b.key for b in blob_list(media_storage(), f"{bob.pk}/"))
    assert bob_blobs and list(blob_list(media_storage(), f"{alice.pk}/"))
    out = run("deleteuser", "alice", "--purge", "--yes")
    assert "deleted alice" in out and "2 media" in out and "12 blobs removed" in out
    assert not User.objects.filter(username="alice").exists()
    assert not Media.objects.filter(owner_id=alice.pk).exists() and not ApiKey.objects.filter(user_id=alice.pk).exists()
    assert list(blob_list(media_storage(), f"{alice.pk}/")) == []
    assert sorted(b.key for b in blob_list(media_storage(), f"{bob.pk}/")) == bob_blobs
    assert Variant.objects.filter(media__owner=bob).count() == 10


def test_deleteuser_asks_and_refuses(alice, monkeypatch):
    with pytest.raises(CommandError, match="--purge"):
        run("deleteuser", "alice")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(CommandError, match="--yes"):
        run("deleteuser", "alice", "--purge")
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", lambda prompt: "bob")
    with pytest.raises(CommandError, match="not confirmed"):
        run("deleteuser", "alice", "--purge")
    assert User.objects.filter(username="alice").exists()
    monkeypatch.setattr("builtins.input", lambda prompt: "alice")
    assert "deleted alice" in run("deleteuser", "alice", "--purge")
    assert not User.objects.filter(username="alice").exists()
    with pytest.raises(CommandError, match="no user"):
        run("deleteuser", "alice", "--purge", "--yes")
