"""Our stream mode against a real nginx serving the same file, and x-accel mode through nginx.

Our side is the production ASGI app (config.asgi.application) under uvicorn, in a thread of
this process so it shares the test database (live_asgi in tests/conftest.py). nginx is
Debian's, installed here when missing; without it these tests skip, except under CI (CI
set), where they fail.

Differences we chose (gallery/ranges.py says why) are listed per case in BATTERY as
`ours=`: the status we answer where nginx answers otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from gallery.delivery import views as delivery
from gallery.models import Media
from gallery.services.accounts import apikey_create
from tests.conftest import free_port, wait_for_port
from tests.gallery.test_delivery import make_media

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DEPLOY_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"
SIZE = 2**20 + 4321


# --- nginx -------------------------------------------------------------------------------
def _find_nginx() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    """Debian's nginx, installed on first use (we run as root in dev and CI)."""
    found = _find_nginx()
    if found is None and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "nginx"]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True)
            subprocess.run(install, env=env, capture_output=True)
        found = _find_nginx()
    if found is None:
        reason = "nginx is not installed and `apt-get install -y nginx` failed"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so this is an error, not a skip)")
        pytest.skip(reason)
    return found


NGINX_MAIN = """
daemon off;
master_process on;
worker_processes 1;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 128; }}
http {{
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    {http}
}}
"""


@dataclass
class Nginx:
    binary: str
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    def start(self, http_block: str) -> Nginx:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # As root, workers would switch to nobody, who cannot enter pytest's 0700 tmp dirs.
        user = "user root;" if os.geteuid() == 0 else ""
        conf = self.workdir / "nginx.conf"
        conf.write_text(NGINX_MAIN.format(user=user, dir=self.workdir, http=http_block))
        check = subprocess.run([self.binary, "-t", "-e", str(self.workdir / "error.log"), "-c", str(conf)],
                               capture_output=True, text=True)
        assert check.returncode == 0, f"nginx rejects its config:\n{check.stderr}\n{conf.read_text()}"
        self.process = subprocess.Popen([self.binary, "-e", str(self.workdir / "error.log"), "-c", str(conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@dataclass
class Stage:
    media: Media
    data: bytes
    auth: dict[str, str]
    media_root: Path


@pytest.fixture
def stage(alice, settings, tmp_path) -> Stage:
    from django.core.files.storage import storages

    from config.settings import local_storage_config
    from tests.conftest import use_storage

    settings.DELIVERY_MODE = "stream"
    media_root = tmp_path / "media"
    use_storage(settings, local_storage_config(media_root))
    assert storages["media"].location == str(media_root)
    data = os.urandom(SIZE)
    media = make_media(alice, data, filename="sample.bin", content_type="application/octet-stream")
    _, raw = apikey_create(user=alice, name="conformance", scopes=["media.read"])
    return Stage(media, data, {"Authorization": f"Bearer {raw}"}, media_root)


# --- The battery -------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    name: str
    headers: dict[str, str]
    method: str = "GET"
    ours: int | None = None  # our status where we knowingly differ from nginx
    why: str = ""


S = SIZE
PAST = "Sat, 01 Jan 2000 00:00:00 GMT"
FUTURE = "Fri, 01 Jan 2100 00:00:00 GMT"
BATTERY = [
    Case("plain", {}),
    Case("head", {}, method="HEAD"),
    Case("first byte", {"Range": "bytes=0-0"}),
    Case("first 500", {"Range": "bytes=0-499"}),
    Case("middle", {"Range": "bytes=500-999"}),
    Case("open-ended", {"Range": "bytes=500-"}),
    Case("suffix", {"Range": "bytes=-500"}),
    Case("suffix 1", {"Range": "bytes=-1"}),
    Case("suffix longer than file", {"Range": f"bytes=-{S + 100}"}),
    Case("last beyond end", {"Range": f"bytes=0-{S + 1000}"}),
    Case("last byte", {"Range": f"bytes={S - 1}-"}),
    Case("whole file as range", {"Range": f"bytes=0-{S - 1}"}),
    Case("start at size", {"Range": f"bytes={S}-"}),
    Case("out of range", {"Range": f"bytes={S + 10}-{S + 20}"}),
    Case("suffix zero", {"Range": "bytes=-0"}),
    Case("huge number", {"Range": "bytes=99999999999999999999999-"}),
    Case("unit case", {"Range": "BYTES=0-9"}),
    Case("two ranges", {"Range": "bytes=0-9,20-29"}),
    Case("range and suffix", {"Range": "bytes=0-9,-10"}),
    Case("three unordered", {"Range": "bytes=100-199,0-49,500000-500099"}),
    Case("overlapping", {"Range": "bytes=0-10,5-15"}),
    Case("many small", {"Range": "bytes=1-2,4-5,7-8,10-11,13-14"}),
    Case("one satisfiable of two", {"Range": f"bytes=0-9,{S + 5}-"}),
    Case("more than the file", {"Range": f"bytes=0-{S - 1},0-{S - 1}"}),
    Case("head with range", {"Range": "bytes=0-99"}, method="HEAD"),
    Case("head multipart", {"Range": "bytes=0-9,20-29"}, method="HEAD"),
    Case("unknown unit", {"Range": "items=0-9"}),
    Case("no equals", {"Range": "bytes 0-9"}),
    Case("garbage", {"Range": "bytes=abc"}, ours=200, why="malformed: RFC 9110 §14.2 lets us ignore it"),
    Case("inverted", {"Range": "bytes=5-3"}, ours=200, why="invalid range-spec: ignored"),
    Case("empty set", {"Range": "bytes="}),
    Case("double dash", {"Range": "bytes=--5"}, ours=200, why="malformed: ignored"),
    Case("trailing comma", {"Range": "bytes=0-9,"}, ours=206, why="RFC 9110 §5.6.1: empty list elements are fine"),
    Case("INM match", {"If-None-Match": "{etag}"}),
    Case("INM mismatch", {"If-None-Match": '"nope"'}),
    Case("INM star", {"If-None-Match": "*"}),
    Case("INM weak form of ours", {"If-None-Match": "W/{etag}"}),
    Case("INM list", {"If-None-Match": '"a", {etag}, "b"'}),
    Case("INM with range", {"If-None-Match": "{etag}", "Range": "bytes=0-9"}),
    Case("INM mismatch with range", {"If-None-Match": '"nope"', "Range": "bytes=0-9"}),
    Case("head INM", {"If-None-Match": "{etag}"}, method="HEAD"),
    Case("IMS exact", {"If-Modified-Since": "{lm}"}),
    Case("IMS past", {"If-Modified-Since": PAST}),
    Case("IMS future", {"If-Modified-Since": FUTURE}),
    Case("IMS garbage", {"If-Modified-Since": "yesterday"}),
    Case("IMS exact with range", {"If-Modified-Since": "{lm}", "Range": "bytes=0-9"}),
    Case("If-Range etag", {"If-Range": "{etag}", "Range": "bytes=0-9"}),
    Case("If-Range other etag", {"If-Range": '"nope"', "Range": "bytes=0-9"}),
    Case("If-Range weak", {"If-Range": "W/{etag}", "Range": "bytes=0-9"}),
    Case("If-Range date", {"If-Range": "{lm}", "Range": "bytes=0-9"}),
    Case("If-Range old date", {"If-Range": PAST, "Range": "bytes=0-9"}),
    Case("If-Range etag multipart", {"If-Range": "{etag}", "Range": "bytes=0-9,-9"}),
    Case("If-Match", {"If-Match": "{etag}"}),
    Case("If-Match star", {"If-Match": "*"}),
    Case("If-Match other", {"If-Match": '"nope"'}),
    Case("If-Match other with range", {"If-Match": '"nope"', "Range": "bytes=0-9"}),
    Case("IUS exact", {"If-Unmodified-Since": "{lm}"}),
    Case("IUS past", {"If-Unmodified-Since": PAST}),
]


@dataclass
class Answer:
    status: int
    headers: requests.structures.CaseInsensitiveDict
    body: bytes

    def parts(self) -> list[tuple[str, str, bytes]]:
        """(Content-Type, Content-Range, bytes) of each part of a multipart/byteranges body."""
        boundary = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", self.headers["Content-Type"]).group(1)
        pieces = self.body.split(f"\r\n--{boundary}".encode())
        assert pieces[0] == b"" and pieces[-1] == b"--\r\n", "bad multipart framing"
        parts = []
        for piece in pieces[1:-1]:
            head, _, payload = piece.partition(b"\r\n\r\n")
            fields = dict(line.split(": ", 1) for line in head.decode().strip().split("\r\n"))
            parts.append((fields["Content-Type"], fields["Content-Range"], payload))
        return parts


def fetch(url: str, method: str, headers: dict[str, str]) -> Answer:
    response = requests.request(method, url, headers={"Accept-Encoding": "identity", **headers},
                                allow_redirects=False, timeout=30)
    return Answer(response.status_code, response.headers, response.content)


def validators(url: str, auth: dict[str, str]) -> dict[str, str]:
    answer = fetch(url, "HEAD", auth)
    assert answer.status == 200, answer
    return {"etag": answer.headers["ETag"], "lm": answer.headers["Last-Modified"]}


def render(headers: dict[str, str], values: dict[str, str]) -> dict[str, str]:
    return {k: v.replace("{etag}", values["etag"]).replace("{lm}", values["lm"]) for k, v in headers.items()}


def compare(case: Case, theirs: Answer, ours: Answer, data: bytes) -> list[str]:
    problems = []
    expected = case.ours if case.ours is not None else theirs.status
    if ours.status != expected:
        problems.append(f"status {ours.status}, nginx {theirs.status}, expected {expected}")
        return problems
    if case.ours is not None and case.ours != theirs.status:
        # A chosen difference: ours must still be a correct answer of its kind.
        if ours.status == 200 and ours.body != (b"" if case.method == "HEAD" else data):
            problems.append("our 200 does not carry the file")
        return problems
    for name in ("Content-Range",):
        if theirs.headers.get(name) != ours.headers.get(name):
            problems.append(f"{name} {ours.headers.get(name)!r}, nginx {theirs.headers.get(name)!r}")
    multipart = ours.headers.get("Content-Type", "").startswith("multipart/")
    if multipart != theirs.headers.get("Content-Type", "").startswith("multipart/"):
        problems.append("one answer is multipart, the other is not")
        return problems
    if ours.status in (200, 206, 304) and not multipart:
        if theirs.headers.get("Content-Length") != ours.headers.get("Content-Length"):
            problems.append(f"Content-Length {ours.headers.get('Content-Length')!r}, "
                            f"nginx {theirs.headers.get('Content-Length')!r}")
    if ours.status in (200, 206):
        if multipart and case.method != "HEAD":
            if ours.parts() != theirs.parts():
                problems.append("multipart parts differ")
        elif ours.body != theirs.body:
            problems.append(f"bodies differ ({len(ours.body)} bytes, nginx {len(theirs.body)})")
        if case.method == "GET" and int(ours.headers["Content-Length"]) != len(ours.body):
            problems.append("our Content-Length is not our body length")
    return problems


@pytest.fixture
def static_nginx(nginx_binary, stage, tmp_path):
    http = f"""
    server {{
        listen 127.0.0.1:{{port}};
        location /files/ {{ alias {stage.media_root}/; etag on; }}
    }}"""
    server = Nginx(nginx_binary, tmp_path / "nginx")
    server.start(http.replace("{port}", str(server.port)))
    yield server
    server.stop()


def test_stream_mode_answers_like_nginx(static_nginx, live_asgi, stage):
    assert len(BATTERY) >= 40
    nginx_url = static_nginx.url(f"/files/{stage.media.original_key}")
    our_url = live_asgi.url(f"/m/{stage.media.token}/0/")
    assert fetch(nginx_url, "GET", {}).body == stage.data, "nginx does not serve the test file"
    theirs_v, ours_v = validators(nginx_url, {}), validators(our_url, stage.auth)
    report = []
    for case in BATTERY:
        theirs = fetch(nginx_url, case.method, render(case.headers, theirs_v))
        ours = fetch(our_url, case.method, {**stage.auth, **render(case.headers, ours_v)})
        problems = compare(case, theirs, ours, stage.data)
        if case.ours is not None and theirs.status == case.ours:
            problems.append(f"nginx now agrees with us ({theirs.status}): drop the `ours=` of this case")
        if problems:
            report.append(f"{case.name} {case.headers}: " + "; ".join(problems))
    assert not report, "differences from nginx:\n" + "\n".join(report)


# --- x-accel through the production config -------------------------------------------------
def render_deploy_conf(*, port: int, upstream: str, media_root: Path) -> str:
    """deploy/nginx.conf with loopback addresses and test paths; every substitution must apply."""
    text = DEPLOY_CONF.read_text()
    for old, new in (("server web:8000;", f"server {upstream};"), ("listen 80;", f"listen 127.0.0.1:{port};"),
                     ("alias /data/media/;", f"alias {media_root}/;")):
        assert text.count(old) == 1, f"deploy/nginx.conf no longer has {old!r}: update this test"
        text = text.replace(old, new)
    return text


@pytest.fixture
def deploy_nginx(nginx_binary, live_asgi, stage, tmp_path, settings):
    settings.DELIVERY_MODE = "x-accel"
    server = Nginx(nginx_binary, tmp_path / "deploy-nginx")
    server.start(render_deploy_conf(port=server.port, upstream=f"127.0.0.1:{live_asgi.port}",
                                    media_root=stage.media_root))
    yield server
    server.stop()


def test_x_accel_through_the_deploy_config(deploy_nginx, stage, charlie):
    media, data = stage.media, stage.data
    # A type nginx cannot guess from the key's extension: it must come from Django.
    Media.objects.filter(pk=media.pk).update(content_type="image/jpeg")
    whole = fetch(deploy_nginx.url(f"/m/{media.token}/0/"), "GET", stage.auth)
    assert whole.status == 200 and whole.body == data
    assert whole.headers["Content-Type"] == "image/jpeg"
    assert whole.headers["Cache-Control"] == "private, no-cache"
    assert whole.headers["Content-Disposition"] == 'inline; filename="sample.bin"'
    assert whole.headers["X-Content-Type-Options"] == "nosniff"
    assert whole.headers["Content-Security-Policy"] == delivery.SANDBOX_CSP
    assert "X-Accel-Redirect" not in whole.headers

    ranged = fetch(deploy_nginx.url(f"/m/{media.token}/0/"), "GET", {**stage.auth, "Range": "bytes=100-199"})
    assert ranged.status == 206
    assert ranged.headers["Content-Range"] == f"bytes 100-199/{SIZE}"
    assert ranged.body == data[100:200]

    download = fetch(deploy_nginx.url(f"/m/{media.token}/0/?download=1"), "GET", stage.auth)
    assert download.headers["Content-Disposition"] == 'attachment; filename="sample.bin"'

    # The internal location cannot be reached from outside, and strangers get nothing.
    assert fetch(deploy_nginx.url(f"/_protected/{media.original_key}"), "GET", {}).status == 404
    assert fetch(deploy_nginx.url(f"/m/{media.token}/0/"), "GET", {}).status == 404
    _, raw = apikey_create(user=charlie, name="k", scopes=["media.read"])
    stranger = fetch(deploy_nginx.url(f"/m/{media.token}/0/"), "GET", {"Authorization": f"Bearer {raw}"})
    assert stranger.status == 404 and data[:64] not in stranger.body
