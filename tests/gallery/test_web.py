from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from gallery.models import Media

pytestmark = pytest.mark.django_db


def test_login_page_and_redirect(client, alice):
    assert client.get("/").status_code == 302
    page = client.get("/login/")
    assert page.status_code == 200 and b'name="password"' in page.content
    bad = client.post("/login/", {"username": "alice", "password": "wrong"})
    assert bad.status_code == 200 and b"didn't match" in bad.content
    good = client.post("/login/", {"username": "alice", "password": "alice-password"})
    assert good.status_code == 302 and good["Location"] == "/"


def test_grid_shows_only_my_media_and_upload_form(client, alice, charlie, django_capture_on_commit_callbacks,
                                                   corpus):
    client.force_login(alice)
    photo = (corpus / "jpg" / "Canon_40D.jpg").read_bytes()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/upload/", {"file": [SimpleUploadedFile("Canon_40D.jpg", photo, "image/jpeg"),
                                                     SimpleUploadedFile("notes.txt", b"hello", "text/plain")]})
    assert response.status_code == 302
    assert Media.objects.filter(owner=alice).count() == 2
    page = client.get("/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'enctype="multipart/form-data"' in html and "2 items" in html
    for media in Media.objects.filter(owner=alice):
        assert str(media.id) in html
    client.force_login(charlie)
    assert "Nothing here yet" in client.get("/").content.decode()


def test_upload_over_quota_shows_a_message_and_keeps_existing(client, db):
    from gallery.services.accounts import user_create

    frank = user_create(username="frank", password="frank-password", quota_bytes=5)
    client.force_login(frank)
    response = client.post("/upload/", {"file": SimpleUploadedFile("big.txt", b"123456")}, follow=True)
    assert "do not fit" in response.content.decode()
    assert not Media.objects.filter(owner=frank).exists()


def test_a_tile_is_the_timelines_own_markup_and_follows_the_rule(client, alice, charlie, upload, corpus):
    from gallery.models import Media
    from tests.conftest import api_client

    media = Media.objects.get(pk=upload(api_client(alice), corpus / "jpg" / "Canon_40D.jpg").json()["id"])
    client.force_login(alice)
    tile = client.get(f"/tiles/{media.pk}/")
    assert tile.status_code == 200
    fragment = tile.content.decode().strip()
    assert fragment.startswith(f'<li class="tile image ready" data-id="{media.pk}">')
    assert fragment in client.get("/").content.decode()  # the same markup as the first render
    Media.objects.filter(pk=media.pk).update(in_vault=True)
    assert client.get(f"/tiles/{media.pk}/").status_code == 404
    Media.objects.filter(pk=media.pk).update(in_vault=False)
    client.force_login(charlie)
    assert client.get(f"/tiles/{media.pk}/").status_code == 404
