"""Bad input gets a clear 4xx with a JSON body naming the problem: never a 500."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

BAD_REQUESTS = [
    ("get", "/api/v1/media/not-a-uuid/", None, None),
    ("get", "/api/v1/media/00000000-0000-0000-0000-000000000000/", None, None),
    ("delete", "/api/v1/media/00000000-0000-0000-0000-000000000000/", None, None),
    ("get", "/api/v1/media/?sha256=xyz", None, None),
    ("get", "/api/v1/media/?cursor=garbage", None, None),
    ("post", "/api/v1/media/", {"file": "not a file"}, "multipart"),
    ("post", "/api/v1/media/", "{not json", "json-raw"),
    ("put", "/api/v1/media/", {}, "json"),
    ("post", "/api/v1/media/exists", {"sha256": "nope"}, "json"),
    ("post", "/api/v1/media/exists", {"sha256": ["z" * 64]}, "json"),
    ("post", "/api/v1/media/not-a-uuid/rotate-token/", {}, "json"),
    ("post", "/api/v1/direct-uploads/", {"filename": "", "size": -1}, "json"),
    ("post", "/api/v1/direct-uploads/not-a-uuid/complete", {"parts": "x"}, "json"),
    ("post", "/api/v1/uploads/", None, None),
    ("head", "/api/v1/uploads/not-a-uuid", None, None),
    ("patch", "/api/v1/uploads/00000000-0000-0000-0000-000000000000", b"x", "octet"),
]


@pytest.mark.parametrize("method,url,data,fmt", BAD_REQUESTS)
def test_bad_api_requests_are_4xx_json(alice_api, method, url, data, fmt):
    kwargs = {"HTTP_TUS_RESUMABLE": "1.0.0"}
    if fmt == "json-raw":
        kwargs.update(data=data, content_type="application/json")
    elif fmt == "octet":
        kwargs.update(data=data, content_type="application/offset+octet-stream", HTTP_UPLOAD_OFFSET="0")
    elif data is not None:
        kwargs.update(data=data, format=fmt)
    response = getattr(alice_api, method)(url, **kwargs)
    assert 400 <= response.status_code < 500, (url, response.status_code)
    if method != "head":
        body = response.json()
        assert body["error"] and body["detail"], body


@pytest.mark.parametrize("url", ["/m/nope/0/", "/m/nope/7/", "/m/nope/../", "/m/%00/0/"])
def test_bad_delivery_urls_are_404(client, alice, url):
    client.force_login(alice)
    assert client.get(url).status_code == 404


def test_nul_characters_never_reach_the_database(alice_api, upload):
    import base64

    from gallery.models import Media
    from gallery.processing.pipeline import without_nul

    body = upload(alice_api, name="bad\x00name.txt", data=b"nul in the name").json()
    assert Media.objects.get(pk=body["id"]).original_filename == "badname.txt"
    metadata = "filename " + base64.b64encode(b"a\x00b.jpg").decode()
    response = alice_api.post("/api/v1/uploads/", HTTP_TUS_RESUMABLE="1.0.0", HTTP_UPLOAD_LENGTH="3",
                              HTTP_UPLOAD_METADATA=metadata)
    assert response.status_code == 400 and "NUL" in response.json()["detail"]
    cleaned = without_nul({"title": "So\x00ng", "tags": ["a\x00", 1], "n": 2.5})
    assert cleaned == {"title": "Song", "tags": ["a", 1], "n": 2.5}


# --- Found by the security test (issue "Hardening", item 7) ------------------------------
TUS = {"HTTP_TUS_RESUMABLE": "1.0.0"}


def assert_4xx_json(response, *words: str) -> dict:
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    body = response.json()
    assert body["error"] and body["detail"], body
    for word in words:
        assert word in body["detail"], body
    return body


@pytest.mark.parametrize("value", ["²", "١٢", "1²", "+5", "-1", "0x10", "1_000", "9" * 5000, " ", "1 2"])
def test_upload_length_that_is_not_ascii_digits_is_400(alice_api, value):
    response = alice_api.post("/api/v1/uploads/", HTTP_UPLOAD_LENGTH=value, **TUS)
    assert response.status_code == 400
    assert_4xx_json(response, "Upload-Length")


@pytest.mark.parametrize("value", ["²", "٣", "9" * 5000, "-0"])
def test_upload_offset_that_is_not_ascii_digits_is_400(alice_api, value):
    from gallery.models import Upload

    created = alice_api.post("/api/v1/uploads/", HTTP_UPLOAD_LENGTH="3", **TUS)
    assert created.status_code == 201
    url = created["Location"]
    response = alice_api.patch(url, data=b"abc", content_type="application/offset+octet-stream",
                               HTTP_UPLOAD_OFFSET=value, **TUS)
    assert response.status_code == 400
    assert_4xx_json(response, "Upload-Offset")
    assert Upload.objects.get().offset == 0


@pytest.mark.parametrize("value", ["²", "9" * 5000])
def test_content_length_that_is_not_ascii_digits_is_400(alice_api, value):
    response = alice_api.post("/api/v1/uploads/", HTTP_UPLOAD_LENGTH="3", CONTENT_LENGTH=value,
                              content_type="application/offset+octet-stream", **TUS)
    assert_4xx_json(response)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("url", ["/api/v1/media/exists", "/api/v1/direct-uploads/",
                                 "/api/v1/direct-uploads/00000000-0000-0000-0000-000000000000/complete"])
@pytest.mark.parametrize("body", [nested(1000), '{"sha256": ' + nested(5000) + "}", "{" * 1000])
def test_deeply_nested_json_is_400(alice_api, url, body):
    response = alice_api.post(url, data=body, content_type="application/json")
    assert response.status_code in (400, 404), response.status_code
    assert_4xx_json(response)


@pytest.mark.parametrize("url", ["/api/v1/media/exists", "/api/v1/direct-uploads/"])
def test_deeply_nested_json_names_the_nesting(alice_api, url):
    response = alice_api.post(url, data=nested(1000), content_type="application/json")
    assert response.status_code == 400
    assert_4xx_json(response, "nested")


def b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("decoded", [
    "p=junk", "p=junk&o=1", "p=2024-13-45T99:00:00", "p=\x00", "p=" + "9" * 5000, "o=1&r=1&p=1",
    "p=2024-01-01T00:00:00+99:00", "o=" + "9" * 5000, "p=nan", "p=2024-01-01&r=1",
])
def test_cursor_of_well_formed_base64_junk_is_4xx(alice_api, upload, decoded):
    upload(alice_api, name="a.txt", data=b"something to page over")
    response = alice_api.get("/api/v1/media/", {"cursor": b64(decoded)})
    assert_4xx_json(response, "cursor")
