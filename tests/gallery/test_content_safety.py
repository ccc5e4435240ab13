"""Stored XSS through a client-declared type: the type comes from the bytes, delivery is safe.

The attack: a page uploaded as `holiday.png` with the type `image/png, text/html` (multipart
or tus `filetype`) was stored and served as that, inline, and Chromium ran its script on our
origin. Now the stored type is decided from the file's first bytes, only a closed list of
types is ever inline, and every /m/ answer carries nosniff and a sandboxing CSP.
"""

from __future__ import annotations

import hashlib
import os
import uuid
import zipfile
from io import BytesIO

import pytest
import requests
from django.test import Client

from gallery.models import Media, Upload
from gallery.processing.filetypes import clean_media_type, content_type_for, safe_served_type, sniff_content_type
from tests.conftest import use_storage
from tests.gallery.test_browser import browser, server  # noqa: F401 (fixtures)
from tests.gallery.test_delivery import body, make_media, s3_calls, url  # noqa: F401 (s3_calls: a fixture)
from tests.media_api.conftest import key_for
from tests.media_api.test_tus import OCTETS, headers, meta

ATTACK = (b"<!doctype html><html><body><h1>holiday</h1><script>"
          b"fetch('/api/v1/usage/').then(r => r.text()).then(t => { document.title = 'PWNED ' + t; "
          b"new Image().src = '/stolen?' + encodeURIComponent(document.cookie + t); });"
          b"</script></body></html>")
ATTACK_TYPE = "image/png, text/html"
CSP = "sandbox; default-src 'none'"


@pytest.fixture(autouse=True)
def _stream_mode(settings):
    settings.DELIVERY_MODE = "stream"


@pytest.fixture
def alice_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def assert_served_as_download(response: requests.Response | object, content_type: str) -> None:
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["X-Content-Type-Options"] == "nosniff"


# --- The type decision -------------------------------------------------------------------
def docx_bytes() -> bytes:
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
    return buffer.getvalue()


@pytest.mark.parametrize(("filename", "declared", "data", "expected"), [
    ("holiday.png", ATTACK_TYPE, ATTACK, "application/octet-stream"),
    ("holiday.png", "image/png", ATTACK, "application/octet-stream"),  # a .png that is no PNG
    ("page.html", "text/html", ATTACK, "application/octet-stream"),
    ("logo.svg", "image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>",
     "application/octet-stream"),
    ("feed", "application/xhtml+xml", b"<html/>", "application/octet-stream"),
    ("app", "text/javascript", b"alert(1)", "application/octet-stream"),
    ("notes.txt", "text/html", b"just words", "text/plain"),
    ("notes", "text/plain", b"just words", "text/plain"),
    ("report.docx", "text/html", docx_bytes(),
     "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("photo", "text/html", b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
    ("clip.txt", "text/html", b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", "video/mp4"),
    ("song.bin", "", b"ID3\x04\x00\x00\x00\x00\x00\x00", "audio/mpeg"),
    ("raw.dng", "", b"II*\x00\x08\x00\x00\x00", "image/x-adobe-dng"),
    ("doc.pdf", "text/html", b"%PDF-1.7\n", "application/pdf"),
])
def test_the_type_comes_from_the_bytes_and_hints_are_never_active(filename, declared, data, expected):
    assert content_type_for(filename=filename, declared=declared, head=data) == expected


def test_corpus_files_are_recognised(corpus):
    for path, expected in [(corpus / "jpg" / "Canon_40D.jpg", "image/jpeg"),
                           (corpus / "heic" / "IMG_5195.HEIC", "image/heic"),
                           (corpus / "heic" / "samplefilehub.heif", "image/heic")]:
        assert sniff_content_type(path.read_bytes()[:4096]) == expected, path


@pytest.mark.parametrize(("raw", "clean"), [
    ("image/png", "image/png"), ("Image/PNG; charset=x", "image/png"), (ATTACK_TYPE, ""),
    ("image/png\r\nX-Evil: 1", ""), ("image/jpeg\u2603", ""), ("imagé/png", ""), ("image/", ""),
    ("multipart/related", ""), ("", ""), (None, ""),
])
def test_clean_media_type_is_one_bare_token_pair(raw, clean):
    assert clean_media_type(raw) == clean
    assert safe_served_type(raw) == (clean or "application/octet-stream")


# --- The attack, through the API ---------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_multipart_attack_is_stored_and_served_as_a_download(storage, live_server, alice):
    key = key_for(alice)
    auth = {"Authorization": f"Bearer {key}"}
    created = requests.post(f"{live_server.url}/api/v1/media/", headers=auth,
                            files={"file": ("holiday.png", ATTACK, ATTACK_TYPE)}, timeout=30)
    assert created.status_code == 201, created.text
    assert created.json()["content_type"] == "application/octet-stream"
    assert Media.objects.get(owner=alice).content_type == "application/octet-stream"

    served = requests.get(live_server.url + created.json()["original_url"], headers=auth, timeout=30)
    assert_served_as_download(served, "application/octet-stream")
    assert served.content == ATTACK


@pytest.mark.django_db(transaction=True)
def test_tus_attack_is_stored_and_served_as_a_download(storage, live_server, alice):
    key = key_for(alice)
    endpoint = f"{live_server.url}/api/v1/uploads/"
    created = requests.post(endpoint, headers=headers(key, **{
        "Upload-Length": str(len(ATTACK)), "Upload-Metadata": meta(filename="holiday.png", filetype=ATTACK_TYPE)}),
        timeout=30)
    assert created.status_code == 201, created.text
    done = requests.patch(created.headers["Location"], data=ATTACK, timeout=30, headers=headers(
        key, **{"Upload-Offset": "0", "Content-Type": OCTETS}))
    assert done.status_code == 204, done.text
    media = Upload.objects.get(owner=alice).media
    assert media.content_type == "application/octet-stream" and media.kind == Media.Kind.OTHER

    served = requests.get(f"{live_server.url}/m/{media.token}/0/", headers={"Authorization": f"Bearer {key}"},
                          timeout=30)
    assert_served_as_download(served, "application/octet-stream")
    assert served.content == ATTACK


@pytest.mark.django_db(transaction=True)
def test_a_real_jpeg_declared_as_html_is_a_jpeg_shown_inline(storage, live_server, alice, corpus):
    key = key_for(alice)
    auth = {"Authorization": f"Bearer {key}"}
    data = (corpus / "jpg" / "Canon_40D.jpg").read_bytes()
    created = requests.post(f"{live_server.url}/api/v1/media/", headers=auth,
                            files={"file": ("Canon_40D.jpg", data, "text/html")}, timeout=60)
    assert created.status_code == 201, created.text
    media = Media.objects.get(owner=alice)
    assert media.content_type == "image/jpeg" and media.kind == Media.Kind.IMAGE
    assert media.status == Media.Status.READY  # processed as the photo it is

    served = requests.get(f"{live_server.url}/m/{media.token}/0/", headers=auth, timeout=30)
    assert served.status_code == 200 and served.content == data
    assert served.headers["Content-Type"] == "image/jpeg"
    assert served.headers["Content-Disposition"] == 'inline; filename="Canon_40D.jpg"'
    assert served.headers["Content-Security-Policy"] == CSP


@pytest.mark.parametrize("filetype", ["image/png\r\nSet-Cookie: sessionid=evil", "image/jpeg\u2603",
                                      "ímage/png", "text/html\n", "\u00e9" * 300])
@pytest.mark.django_db(transaction=True)
def test_a_filetype_with_line_breaks_or_any_unicode_never_gives_a_500(storage, live_server, alice, filetype):
    key = key_for(alice)
    endpoint = f"{live_server.url}/api/v1/uploads/"
    data = b"plain words, nothing more"
    created = requests.post(endpoint, headers=headers(key, **{
        "Upload-Length": str(len(data)), "Upload-Metadata": meta(filename="note", filetype=filetype)}), timeout=30)
    assert created.status_code == 201, created.text
    done = requests.patch(created.headers["Location"], data=data, timeout=30, headers=headers(
        key, **{"Upload-Offset": "0", "Content-Type": OCTETS}))
    assert done.status_code == 204, done.text
    media = Upload.objects.get(owner=alice).media
    assert media.content_type == "application/octet-stream"

    served = requests.get(f"{live_server.url}/m/{media.token}/0/", headers={"Authorization": f"Bearer {key}"},
                          timeout=30)
    assert_served_as_download(served, "application/octet-stream")
    assert "sessionid" not in served.headers.get("Set-Cookie", "") and served.content == data


@pytest.mark.django_db(transaction=True)
def test_an_upload_begun_before_types_were_cleaned_still_finishes_on_s3(moto_server, settings, live_server, alice):
    """A row whose filetype was stored raw (before creation cleaned it): the S3 calls that
    take a Content-Type get the cleaned one, so the upload neither fails nor injects."""
    use_storage(settings, moto_server.storage_config(moto_server.new_bucket()))
    settings.TUS_S3_PART_SIZE = 5 * 2**20
    key = key_for(alice)
    data = os.urandom(6 * 2**20)  # a multipart upload, then the last part
    created = requests.post(f"{live_server.url}/api/v1/uploads/", timeout=30, headers=headers(key, **{
        "Upload-Length": str(len(data)), "Upload-Metadata": meta(filename="old.bin")}))
    assert created.status_code == 201, created.text
    Upload.objects.filter(owner=alice).update(filetype="image/png\r\nX-Injected: 1")
    done = requests.patch(created.headers["Location"], data=data, timeout=30, headers=headers(
        key, **{"Upload-Offset": "0", "Content-Type": OCTETS}))
    assert done.status_code == 204, done.text
    assert Upload.objects.get(owner=alice).media.size == len(data)


@pytest.mark.django_db(transaction=True)
def test_a_multipart_type_with_unicode_is_a_hint_dropped_not_a_500(live_server, alice):
    auth = {"Authorization": f"Bearer {key_for(alice)}"}
    created = requests.post(f"{live_server.url}/api/v1/media/", headers=auth, timeout=30,
                            files={"file": ("note", b"plain words", "text/plain\u2603")})
    assert created.status_code == 201, created.text
    assert created.json()["content_type"] == "application/octet-stream"
    served = requests.get(live_server.url + created.json()["original_url"], headers=auth, timeout=30)
    assert_served_as_download(served, "application/octet-stream")


# --- Rows stored before the fix ----------------------------------------------------------
@pytest.mark.parametrize(("stored", "served_type"), [
    (ATTACK_TYPE, "application/octet-stream"),
    ("text/html", "application/octet-stream"),
    ("image/svg+xml", "application/octet-stream"),
    ("image/png\r\nX-Injected: 1", "application/octet-stream"),
    ("image/jpeg\u2603", "application/octet-stream"),
    ("text/plain", "text/plain"),
    ("Text/HTML; charset=utf-8", "application/octet-stream"),
])
def test_an_old_row_with_a_bad_type_is_served_safely(alice_client, alice, storage, stored, served_type):
    media = make_media(alice, ATTACK, filename="holiday.png", content_type=stored)
    response = alice_client.get(url(media))
    assert_served_as_download(response, served_type)
    assert "X-Injected" not in response.headers
    assert body(response) == ATTACK
    ranged = alice_client.get(url(media), HTTP_RANGE="bytes=0-1,5-9")  # the parts name the type too
    assert ranged.status_code == 206
    assert f"Content-Type: {served_type}\r\n".encode() in body(ranged)
    assert b"text/html" not in body(ranged)


def test_an_old_row_in_x_accel_mode(settings, alice_client, alice):
    settings.DELIVERY_MODE = "x-accel"
    media = make_media(alice, ATTACK, filename="holiday.png", content_type="image/png\r\nX-Injected: 1")
    response = alice_client.get(url(media))
    assert response["X-Accel-Redirect"]
    assert_served_as_download(response, "application/octet-stream")


@pytest.mark.django_db(transaction=True)
def test_an_old_row_in_redirect_mode(settings, alice_client, alice, moto_server):
    from tests.conftest import use_storage

    use_storage(settings, moto_server.storage_config(moto_server.new_bucket()))
    settings.DELIVERY_MODE = "redirect"
    media = make_media(alice, ATTACK, filename="holiday.png", content_type=ATTACK_TYPE)
    response = alice_client.get(url(media))
    assert response.status_code == 302
    assert response["Content-Security-Policy"] == CSP
    presigned = requests.get(response["Location"], timeout=10)
    assert presigned.status_code == 200 and presigned.content == ATTACK
    assert presigned.headers["Content-Type"] == "application/octet-stream"
    assert presigned.headers["Content-Disposition"].startswith("attachment;")


# --- What may be inline ------------------------------------------------------------------
@pytest.mark.parametrize(("content_type", "disposition"), [
    ("image/jpeg", "inline"), ("image/png", "inline"), ("image/gif", "inline"), ("image/webp", "inline"),
    ("image/avif", "inline"), ("video/mp4", "inline"), ("video/webm", "inline"), ("audio/mpeg", "inline"),
    ("audio/mp4", "inline"), ("audio/ogg", "inline"), ("audio/wav", "inline"), ("audio/flac", "inline"),
    ("audio/webm", "inline"), ("application/pdf", "inline"),
    ("text/plain", "attachment"), ("image/heic", "attachment"), ("image/tiff", "attachment"),
    ("image/bmp", "attachment"), ("video/quicktime", "attachment"), ("image/svg+xml", "attachment"),
    ("text/html", "attachment"), ("application/octet-stream", "attachment"), ("text/csv", "attachment"),
])
def test_only_a_closed_list_is_inline_and_every_answer_is_sandboxed(alice_client, alice, content_type,
                                                                     disposition):
    media = make_media(alice, b"bytes", filename="x.bin", content_type=content_type)
    response = alice_client.get(url(media))
    assert response["Content-Disposition"].split(";")[0] == disposition
    assert response["Content-Security-Policy"] == CSP
    assert response["X-Content-Type-Options"] == "nosniff"
    assert alice_client.get(url(media) + "?download=1")["Content-Disposition"].startswith("attachment;")


def test_variants_and_revalidations_carry_the_sandbox_too(alice_client, alice):
    from tests.gallery.test_delivery import make_variant

    media = make_media(alice, b"bytes")
    make_variant(media, "2", b"webp bytes")
    variant = alice_client.get(url(media, "2"))
    assert variant["Content-Security-Policy"] == CSP
    revalidated = alice_client.get(url(media), HTTP_IF_NONE_MATCH=alice_client.get(url(media))["ETag"])
    assert revalidated.status_code == 304 and revalidated["Content-Security-Policy"] == CSP


def test_media_record_reads_only_the_head_of_an_s3_blob(alice, moto_server, settings, s3_calls, monkeypatch):
    """A large original is typed from one ranged GET of a few KB, not by downloading it."""
    from django.core.files.base import ContentFile

    from gallery.services import media as media_service
    from gallery.storage import media_storage, original_key
    from tests.conftest import use_storage

    use_storage(settings, moto_server.storage_config(moto_server.new_bucket()))
    monkeypatch.setattr(media_service, "media_queue_processing", lambda **kw: None)  # no processing here
    data = b"\xff\xd8\xff\xe0" + bytes(3 * 2**20)
    media_id = uuid.uuid4()
    key = media_storage().save(original_key(user_id=alice.pk, media_id=media_id, filename="big.jpg"),
                               ContentFile(data))
    s3_calls.clear()
    result = media_service.media_record(owner=alice, media_id=media_id, key=key, size=len(data), sha256="0" * 64,
                                        filename="big.jpg", content_type="text/html")
    assert result.media.content_type == "image/jpeg"
    assert s3_calls == ["bytes=0-4095"]


@pytest.mark.parametrize("content_type", [ATTACK_TYPE, "image/png\r\nX-Evil: 1", "image/jpeg\u2603"])
def test_a_direct_upload_takes_the_declared_type_as_a_hint_only(alice, alice_api, moto_server, settings,
                                                                content_type):
    from tests.conftest import use_storage
    from tests.media_api.test_direct_uploads import put_parts

    use_storage(settings, moto_server.storage_config(moto_server.new_bucket()))
    created = alice_api.post("/api/v1/direct-uploads/", {
        "filename": "holiday.png", "size": len(ATTACK), "content_type": content_type,
        "sha256": hashlib.sha256(ATTACK).hexdigest()}, format="json")
    assert created.status_code == 201, created.content
    plan = created.json()
    done = alice_api.post(plan["complete_url"], {"parts": put_parts(plan, ATTACK)}, format="json")
    assert done.status_code in (200, 201), done.content
    media = Media.objects.get(owner=alice)
    assert media.content_type == "application/octet-stream"


# --- In a real browser -------------------------------------------------------------------
def test_chromium_runs_no_script_from_the_uploaded_page(server, browser, alice):
    """The attack end to end: the page is uploaded through the API, then alice opens its URL."""
    from playwright.sync_api import Error as PlaywrightError

    from tests.gallery.test_browser import log_in

    auth = {"Authorization": f"Bearer {key_for(alice)}"}
    created = requests.post(f"{server}/api/v1/media/", headers=auth, timeout=30,
                            files={"file": ("holiday.png", ATTACK, ATTACK_TYPE)})
    assert created.status_code == 201, created.text
    media_url = server + created.json()["original_url"]
    page = log_in(browser, server, "alice")
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))

    with page.expect_download(timeout=15_000) as download:
        try:
            page.goto(media_url)
        except PlaywrightError:
            pass  # "Download is starting": an attachment is not a page
    assert download.value.suggested_filename == "holiday.png"

    # A row stored as an image type before the fix: Chromium must show an image, not a page.
    Media.objects.filter(owner=alice).update(content_type="image/png")
    page.goto(media_url + "?v=2")  # not the cached download (same ETag, so a 304 would reuse it)
    page.wait_for_timeout(1000)
    assert page.evaluate("document.contentType") == "image/png"
    assert "PWNED" not in page.title()
    assert not [u for u in seen if "/api/v1/usage/" in u or "/stolen" in u]
