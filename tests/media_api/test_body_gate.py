"""Upload bodies refused before they are read (issue "Hardening", item 6), against the
production handler: uvicorn serving config.asgi:application on a loopback port.

Each refused request announces a large body and sends it slowly: the answer must come
while the body is still coming (Django used to receive it all first, spooling it to disk),
and nothing may reach the temporary directories."""

from __future__ import annotations

import io
import json
import select
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
import uvicorn
from django.middleware.csrf import _get_new_csrf_string

from gallery.models import Media, User
from gallery.services.accounts import apikey_create, user_create
from tests.conftest import free_port
from tests.media_api.conftest import key_for

pytestmark = pytest.mark.django_db(transaction=True)

MiB = 2**20
DECLARED = 300 * 10**6  # what the attacker announces
SENT_AT_MOST = 24 * MiB  # what the test is willing to send before it wants an answer
MULTIPART = "multipart/form-data; boundary=xyz"
JSON = "application/json"


class Server:
    def __init__(self, port: int, spool: Path) -> None:
        self.port, self.spool = port, spool
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture
def asgi_server(transactional_db, settings, tmp_path, monkeypatch):
    """uvicorn with config.asgi:application in a thread; temporary files go to `spool`."""
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where Django's ASGI handler spools bodies
    settings.FILE_UPLOAD_TEMP_DIR = str(spool)  # where multipart files go
    from config.asgi import application

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning",
                                          lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield Server(port, spool)
    server.should_exit = True
    thread.join(timeout=10)


def spooled(server: Server) -> list[Path]:
    return [p for p in server.spool.rglob("*") if p.is_file()]


def send_slowly(server: Server, method: str, path: str, headers: dict[str, str], *, declared: int | None = DECLARED,
                chunked: bool = False) -> tuple[int, dict[str, str], bytes, int]:
    """Announce a large body and send it while watching for an answer; (status, headers, body,
    bytes sent when the answer came). Fails when no answer comes before SENT_AT_MOST is sent."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    framing = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {declared}\r\n"
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n{framing}"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode("latin-1"))
    piece = b"x" * 65536
    if chunked:
        piece = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    sock.setblocking(False)
    sent, answered_by = 0, None
    while True:
        readable, writable, _ = select.select([sock], [sock] if sent < SENT_AT_MOST else [], [], 0.05)
        if readable:
            answered_by = sent
            break
        if sent >= SENT_AT_MOST:
            readable, _, _ = select.select([sock], [], [], 5)
            assert readable, f"no answer after {sent} bytes of the body: the server is waiting for all of it"
            answered_by = sent
            break
        if writable:
            try:
                sent += sock.send(piece)
            except (BlockingIOError, ConnectionResetError, BrokenPipeError):
                pass
    assert spooled(server) == [], "the body reached the disk"
    sock.setblocking(True)
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        assert more, data
        data += more
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    answer_headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(answer_headers.get("content-length", "0"))
    while len(body) < length:
        more = sock.recv(65536)
        if not more:
            break
        body += more
    sock.close()
    return status, answer_headers, body, answered_by


ANONYMOUS_UPLOADS = [
    ("POST", "/api/v1/media/", {"Content-Type": MULTIPART}),
    ("POST", "/api/v1/uploads/", {"Tus-Resumable": "1.0.0", "Upload-Length": str(DECLARED),
                                  "Content-Type": "application/offset+octet-stream"}),
    ("PATCH", f"/api/v1/uploads/{uuid.uuid4()}", {"Tus-Resumable": "1.0.0", "Upload-Offset": "0",
                                                  "Content-Type": "application/offset+octet-stream"}),
    ("POST", "/api/v1/direct-uploads/", {"Content-Type": JSON}),
    ("POST", f"/api/v1/direct-uploads/{uuid.uuid4()}/complete", {"Content-Type": JSON}),
    ("POST", "/api/v1/media/exists", {"Content-Type": JSON}),
]


@pytest.mark.parametrize("method,path,headers", ANONYMOUS_UPLOADS)
def test_an_anonymous_body_is_refused_with_401_before_it_is_read(asgi_server, method, path, headers):
    status, answer, body, sent = send_slowly(asgi_server, method, path, headers)
    assert status == 401
    assert json.loads(body)["error"] == "not_authenticated"
    assert answer["www-authenticate"].startswith("Bearer")
    assert sent < DECLARED // 10
    if path.startswith("/api/v1/uploads"):
        assert answer["tus-resumable"] == "1.0.0"


def test_an_anonymous_web_form_upload_goes_to_the_login_page_before_the_body_is_read(asgi_server):
    status, answer, _, _ = send_slowly(asgi_server, "POST", "/upload/", {"Content-Type": MULTIPART})
    assert status == 302 and answer["location"] == "/login/?next=/upload/"


def test_a_revoked_key_and_a_read_only_key_are_refused_before_the_body(asgi_server, alice):
    status, _, body, _ = send_slowly(asgi_server, "POST", "/api/v1/media/", {
        "Content-Type": MULTIPART, "Authorization": "Bearer chip_0123abcd_nope"})
    assert status == 401 and "invalid" in json.loads(body)["detail"]
    _, read_only = apikey_create(user=alice, name="ro", scopes=["media.read"])
    status, _, body, _ = send_slowly(asgi_server, "POST", "/api/v1/media/", {
        "Content-Type": MULTIPART, "Authorization": f"Bearer {read_only}"})
    assert status == 403 and "media.read_write" in json.loads(body)["detail"]


def test_a_multipart_body_over_the_quota_is_413_before_it_is_read(asgi_server, db):
    dora = user_create(username="dora", password="dora-password", quota_bytes=10 * MiB)
    status, _, body, _ = send_slowly(asgi_server, "POST", "/api/v1/media/", {
        "Content-Type": MULTIPART, "Authorization": f"Bearer {key_for(dora)}"})
    answer = json.loads(body)
    assert status == 413 and answer["error"] == "quota_exceeded" and answer["requested"] == DECLARED


def session_cookies(user) -> dict[str, str]:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return {"sessionid": client.cookies["sessionid"].value, "csrftoken": _get_new_csrf_string()}


def test_the_session_counts_at_the_gate_too(asgi_server, db):
    erin = user_create(username="erin", password="erin-password", quota_bytes=10 * MiB)
    cookies = session_cookies(erin)
    status, _, body, _ = send_slowly(asgi_server, "POST", "/upload/", {
        "Content-Type": MULTIPART, "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())})
    assert status == 413 and json.loads(body)["error"] == "quota_exceeded"


def test_a_json_body_over_the_limit_is_413_before_it_is_read(asgi_server, alice):
    status, _, body, _ = send_slowly(asgi_server, "POST", "/api/v1/media/exists", {
        "Content-Type": JSON, "Authorization": f"Bearer {key_for(alice)}"})
    assert status == 413 and json.loads(body)["error"] == "too_large"


def test_a_chunked_json_body_is_cut_off_at_the_limit(asgi_server, alice, settings):
    status, _, body, sent = send_slowly(asgi_server, "POST", "/api/v1/direct-uploads/", {
        "Content-Type": JSON, "Authorization": f"Bearer {key_for(alice)}"}, chunked=True)
    assert status == 413 and json.loads(body)["max_size"] == settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert sent < SENT_AT_MOST


def test_uploads_that_may_be_read_still_work(asgi_server, alice):
    """Through the gate: an API-key multipart upload, a session web-form upload, a tus upload."""
    data = bytes(range(256)) * (5 * MiB // 256 + 1)  # over FILE_UPLOAD_MAX_MEMORY_SIZE
    key = key_for(alice)
    answer = requests.post(f"{asgi_server.url}/api/v1/media/", headers={"Authorization": f"Bearer {key}"},
                           files={"file": ("big.bin", io.BytesIO(data))}, timeout=60)
    assert answer.status_code == 201, answer.text
    cookies = session_cookies(alice)
    answer = requests.post(f"{asgi_server.url}/upload/", cookies=cookies, allow_redirects=False, timeout=60,
                           data={"csrfmiddlewaretoken": cookies["csrftoken"]},
                           files={"file": ("other.bin", io.BytesIO(data[::-1]))})
    assert answer.status_code == 302 and "login" not in answer.headers["Location"]
    tus = {"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"}
    created = requests.post(f"{asgi_server.url}/api/v1/uploads/", timeout=60, data=data[1:], headers={
        **tus, "Upload-Length": str(len(data) - 1), "Content-Type": "application/offset+octet-stream"})
    assert created.status_code == 201 and created.headers["Media-Id"], created.text
    assert Media.objects.filter(owner=alice).count() == 3
    assert User.objects.get(pk=alice.pk).reserved_bytes == 0
