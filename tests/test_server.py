"""uvicorn as `manage.py run` starts it (config.server): request headers have a size limit, and
request bodies reach the app whole and in order however the socket reads cut them."""

from __future__ import annotations

import hashlib
import json
import http.client
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
MiB = 2**20


@pytest.fixture(scope="module")
def server_env(tmp_path_factory):
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "MAX_REQUEST_HEADER_SIZE": "64KiB",
            "CHIPMUNK_DATA_DIR": str(tmp_path_factory.mktemp("server-data")), "DATABASE_URL": "",
            "STORAGE_BACKEND": "local", "JOBS_MODE": "queue"}


@pytest.fixture(scope="module")
def server(server_env):
    """A real uvicorn with the options of `manage.py run`, on a loopback port."""
    port = free_port()
    code = ("import django, uvicorn; django.setup(); from config.server import uvicorn_options; "
            f"uvicorn.run('config.asgi:application', **uvicorn_options(host='127.0.0.1', port={port}))")
    env = server_env
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"uvicorn did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
    yield port
    process.terminate()
    process.wait(timeout=10)


def get(port: int, path: str, headers: str = "") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def test_a_huge_header_is_refused_quickly_and_the_server_goes_on(server):
    started = time.monotonic()
    sent, answer = 0, b""
    chunk = b"a" * 65536
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        sock.sendall(b"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ")
        try:
            while sent < 64 * MiB:
                sock.sendall(chunk)
                sent += len(chunk)
                if select.select([sock], [], [], 0)[0]:
                    break
            answer = sock.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed with our bytes unread: the kernel may reset before its 431 is read
    elapsed = time.monotonic() - started
    # The old server read all 64 MiB and then waited for the end of the headers.
    assert sent < 16 * MiB, f"{sent} bytes of header were accepted"
    assert elapsed < 10
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert get(server, "/login/").startswith(b"HTTP/1.1 200 ")


def test_the_refusal_is_a_431(server):
    """Headers past the limit but small enough to be read whole: the answer is readable."""
    answer = get(server, "/login/", "X-Padding: " + "a" * 100_000 + "\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_headers_under_the_limit_are_served(server):
    # A big cookie jar is still well under 64 KiB.
    answer = get(server, "/login/", "Cookie: " + "; ".join(f"c{i}={'v' * 100}" for i in range(150)) + "\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")


@pytest.fixture(scope="module")
def server_key(server_env):
    """An API key of a user of the server's own database."""
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=server_env, check=True, capture_output=True)
    subprocess.run([*manage, "createuser", "uma", "--password", "uma-password-1", "--quota", "1GB"],
                   cwd=ROOT, env=server_env, check=True, capture_output=True)
    created = subprocess.run([*manage, "apikey", "create", "uma", "--scopes", "media.read,media.read_write"],
                             cwd=ROOT, env=server_env, check=True, capture_output=True, text=True)
    return created.stdout.strip().splitlines()[-1]


def tus_in_pieces(port: int, auth: dict[str, str], data: bytes, metadata: str) -> tuple[http.client.HTTPConnection,
                                                                                         http.client.HTTPResponse]:
    """A tus upload of `data` in one PATCH whose body goes out in uneven pieces with pauses:
    the open connection and the PATCH's answer (read)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/api/v1/uploads/", headers={**auth, "Upload-Length": str(len(data)),
                                                      "Upload-Metadata": metadata})
    created = conn.getresponse()
    created.read()
    assert created.status == 201, created.status
    location = created.getheader("Location")
    conn.putrequest("PATCH", location[location.index("/api/"):])
    for name, value in {**auth, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
                        "Content-Length": str(len(data))}.items():
        conn.putheader(name, value)
    conn.endheaders()
    sent = 0
    for size in (1, 70_000, 3 * MiB, 100, 5 * MiB + 7, 64 * 1024):
        conn.send(data[sent:sent + size])
        sent += size
        time.sleep(0.05)
    conn.send(data[sent:])
    answer = conn.getresponse()
    answer.read()
    assert answer.status == 204, answer.status
    assert answer.getheader("Upload-Offset") == str(len(data))
    return conn, answer


def test_a_tus_body_cut_into_uneven_pieces_arrives_whole(server, server_key):
    """The protocol hands body pieces on without copying them while the app keeps up, and
    joins them when it falls behind (a pause mid-body lets pieces pile up): either way the
    stored bytes and the SHA-256 computed while they arrived are the file's."""
    data = os.urandom(24 * MiB + 12_345)
    auth = {"Authorization": f"Bearer {server_key}", "Tus-Resumable": "1.0.0"}
    conn, answer = tus_in_pieces(server, auth, data, "filename cGllY2VzLmJpbg==")
    conn.request("GET", f"/api/v1/media/{answer.getheader('Media-Id')}/", headers=auth)
    media = conn.getresponse()
    body = media.read()
    assert media.status == 200, body[:200]
    assert hashlib.sha256(data).hexdigest().encode() in body
    conn.close()


def test_a_vault_tus_body_in_uneven_pieces_is_encrypted_whole(server, server_key, server_env):
    """The same body into the vault: each piece, read into the view's reused buffers, is
    encrypted at its offset as it arrives; what the owner downloads is the file, and no part
    file or blob on disk holds a slice of it in the clear."""
    data = os.urandom(12 * MiB + 777)
    auth = {"Authorization": f"Bearer {server_key}", "Tus-Resumable": "1.0.0"}
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=60)
    for path in ("/api/v1/vault/setup", "/api/v1/vault/unlock"):
        conn.request("POST", path, body=json.dumps({"passphrase": "server vault passphrase"}),
                     headers={**auth, "Content-Type": "application/json"})
        reply = conn.getresponse()
        assert reply.status in (200, 201), (path, reply.status, reply.read()[:200])
        reply.read()
    conn.close()
    conn, answer = tus_in_pieces(server, auth, data, "filename c2VjcmV0LmJpbg==,vault dHJ1ZQ==")
    conn.request("GET", f"/api/v1/vault/media/{answer.getheader('Media-Id')}/", headers=auth)
    media = conn.getresponse()
    item = json.loads(media.read())
    assert media.status == 200 and item["name"] == "secret.bin", item
    conn.request("GET", item["original_url"], headers=auth)
    original = conn.getresponse()
    assert original.status == 200 and original.read() == data
    conn.close()
    probe = data[5 * MiB:5 * MiB + 64]
    for path in Path(server_env["CHIPMUNK_DATA_DIR"]).rglob("*"):
        if path.is_file() and path.stat().st_size < 64 * MiB:
            assert probe not in path.read_bytes(), path
