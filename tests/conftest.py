"""The cast and the stage for every test.

alice owns things, bob is someone she shares with, charlie is a stranger who must see
nothing. Storage runs on local disk or on S3 through a moto server on a loopback port
(real HTTP, real boto3, signatures checked); `storage` is parametrised over both.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
from channels.layers import channel_layers
from django.core.files.storage import storages
from rest_framework.test import APIClient

from config.settings import local_storage_config, s3_storage_config
from gallery.services.accounts import apikey_create, user_create

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unavailable(reason: str) -> NoReturn:
    """A part a test needs is missing: skip here, fail under CI (CI=true), where it must be."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI is set, so this is an error, not a skip)")
    pytest.skip(reason)


def required_redis_url() -> str:
    """REDIS_URL of a Redis that answers; see `unavailable` when there is none."""
    url = os.environ.get("REDIS_URL")
    if not url:
        unavailable("REDIS_URL is not set (CI sets it)")
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at {url} does not answer: {exc}")
    return url


@pytest.fixture(scope="session")
def corpus() -> Path:
    assert CORPUS.is_dir(), f"the sample corpus is missing at {CORPUS}"
    return CORPUS


# --- S3 through a moto server ------------------------------------------------------------
class MotoServer:
    """A moto S3 server in a thread of this process, reached over real HTTP, checking signatures.

    moto accepts any signature unless IAM authentication is on. Here it is: every request
    must be signed with the keys of an IAM user the server knows (made once per process,
    before authentication is switched on; moto's state is per process, so every
    MotoServer shares that user). moto 5 reads SigV4 only from the Authorization header;
    presigned URLs, which carry it in the query string, are checked by
    _s3_request_with_query_auth below.
    """

    credentials: dict[str, str] | None = None  # {"access_key", "secret_key"} of the IAM user

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def start(self) -> MotoServer:
        from moto import settings as moto_settings
        from moto.core.authorization import ActionAuthenticatorMixin
        from moto.iam import access_control

        self._server.start()
        access_control.S3IAMRequest = _s3_request_with_query_auth()
        if MotoServer.credentials is None:
            MotoServer.credentials = self._create_iam_user()
        # What moto's INITIAL_NO_AUTH_ACTION_COUNT=0 does, for a server already imported.
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0
        return self

    def _create_iam_user(self) -> dict[str, str]:
        from moto.core.authorization import disable_iam_authentication

        with disable_iam_authentication():
            iam = boto3.client("iam", endpoint_url=self.endpoint, region_name=REGION,
                               aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
            iam.create_user(UserName="chipmunk")
            iam.put_user_policy(UserName="chipmunk", PolicyName="s3", PolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
            key = iam.create_access_key(UserName="chipmunk")["AccessKey"]
        return {"access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"]}

    def stop(self) -> None:
        self._server.stop()

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=self.credentials["access_key"],
                            aws_secret_access_key=self.credentials["secret_key"])

    def new_bucket(self) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def storage_config(self, bucket: str) -> dict:
        return s3_storage_config(bucket=bucket, endpoint_url=self.endpoint, region=REGION, **self.credentials)


@functools.cache
def _s3_request_with_query_auth() -> type:
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from moto.iam.access_control import S3IAMRequest

    class S3RequestWithQueryAuth(S3IAMRequest):
        """moto's check of an S3 request, taught presigned URLs.

        Without an Authorization header moto fails with a 500 whatever the URL says. Here
        an anonymous request is refused, and a presigned one is checked as S3 does: the
        signature is recomputed with botocore's presigned-URL signer from the request as
        it arrived (method, path, query without the signature, the signed headers, Host
        among them) and the secret of the access key named in X-Amz-Credential; an
        expired URL is refused.
        """

        def __init__(self, *, headers, path, data, **kwargs) -> None:
            query = dict(parse_qsl(urlsplit(path).query, keep_blank_values=True))
            self._presigned = "Authorization" not in headers and "X-Amz-Signature" in query
            if "Authorization" not in headers and not self._presigned:
                # Anonymous (SigV2 query strings count as such: we sign with SigV4 only);
                # a private bucket refuses it, as S3 does.
                self._data = data
                self._raise_access_denied()
            if self._presigned:
                self._query = query
                headers = {**dict(headers.items()), "Authorization": (
                    f"AWS4-HMAC-SHA256 Credential={query['X-Amz-Credential']}, "
                    f"SignedHeaders={query['X-Amz-SignedHeaders']}, Signature={query['X-Amz-Signature']}")}
            super().__init__(headers=headers, path=path, data=data, **kwargs)

        def _calculate_signature(self) -> str:
            if not self._presigned:
                return super()._calculate_signature()
            signed_at = datetime.strptime(self._query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            expires = int(self._query["X-Amz-Expires"])
            if datetime.now(UTC) > signed_at + timedelta(seconds=expires):
                self._raise_access_denied()
            path, _, raw_query = self._path.partition("?")
            unsigned = "&".join(p for p in raw_query.split("&") if not p.startswith("X-Amz-Signature="))
            headers = self._create_headers_for_aws_request(self._query["X-Amz-SignedHeaders"].split(";"),
                                                           self._headers)
            request = AWSRequest(method=self._method, url=f"{path}?{unsigned}", headers=headers)
            request.context["timestamp"] = self._query["X-Amz-Date"]
            auth = S3SigV4QueryAuth(self._access_key.create_credentials(), self._service, self._region,
                                    expires=expires)
            return auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)

    return S3RequestWithQueryAuth


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer().start()
    yield server
    server.stop()


def use_storage(settings, config: dict) -> None:
    settings.STORAGES = {**settings.STORAGES, "default": config, "media": config}
    storages._storages = {}  # storages caches instances; a new config needs new ones


@pytest.fixture(params=["local", "s3"])
def storage(request, settings, tmp_path):
    """Run the test on local disk and again on S3 (moto); yields the backend name."""
    if request.param == "local":
        use_storage(settings, local_storage_config(tmp_path / "media"))
    else:
        server = request.getfixturevalue("moto_server")
        use_storage(settings, server.storage_config(server.new_bucket()))
    yield request.param
    storages._storages = {}


@pytest.fixture(autouse=True)
def _local_storage_by_default(settings, tmp_path):
    # Every test gets its own media root, so files never leak between tests.
    use_storage(settings, local_storage_config(tmp_path / "default-media"))
    yield
    storages._storages = {}


@pytest.fixture(scope="session", autouse=True)
def _no_stray_connections_at_the_end(django_db_setup, django_db_blocker):
    """Connections that async tests opened in worker threads are never closed by Django's
    test client (it keeps connections open on purpose); on PostgreSQL they would keep the
    test database from being dropped. End them before the database is torn down."""
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()")


# --- The production ASGI app on a loopback port --------------------------------------------
def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class LiveASGI:
    """uvicorn serving config.asgi.application, the production app, from a thread on a free port.

    A thread rather than a process, so it uses this process's test database and sees what
    the `settings` fixture changes. Tests that use it need django_db(transaction=True):
    the server's thread cannot see an open test transaction.
    """

    def __init__(self) -> None:
        import uvicorn

        from config.asgi import application

        self.port = free_port()
        config = uvicorn.Config(application, host="127.0.0.1", port=self.port, lifespan="off",
                                log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveASGI:
        self.thread.start()
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def live_asgi():
    server = LiveASGI().start()
    yield server
    server.stop()


# --- The cast ----------------------------------------------------------------------------
GB = 10**9


@pytest.fixture
def alice(db):
    return user_create(username="alice", password="alice-password", quota_bytes=10 * GB, time_zone="Europe/Paris")


@pytest.fixture
def bob(db):
    return user_create(username="bob", password="bob-password", quota_bytes=10 * GB)


@pytest.fixture
def charlie(db):
    return user_create(username="charlie", password="charlie-password", quota_bytes=10 * GB)


def api_client(user, scopes=("media.read", "media.read_write")) -> APIClient:
    _, raw = apikey_create(user=user, name="test", scopes=list(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def alice_api(alice) -> APIClient:
    return api_client(alice)


@pytest.fixture
def bob_api(bob) -> APIClient:
    return api_client(bob)


@pytest.fixture
def charlie_api(charlie) -> APIClient:
    return api_client(charlie)


@pytest.fixture
def upload(django_capture_on_commit_callbacks):
    """POST a file to /api/v1/media/ and run what the commit queued (processing) inline."""

    def _upload(client: APIClient, path: Path | None = None, *, name: str | None = None,
                data: bytes | None = None):
        import io

        body = data if data is not None else Path(path).read_bytes()
        stream = io.BytesIO(body)
        stream.name = name or Path(path).name
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/api/v1/media/", {"file": stream}, format="multipart")
        return response

    return _upload


# --- A real OpenID provider (tests/oidc_provider) ------------------------------------------
@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory):
    """django-oauth-toolkit with OIDC in its own process: users dana (groups staff, plus), erin
    (pro), frank, gus, hana; the web clients chipmunk (and its misbehaving twins) and the public
    client chipmunk-phone."""
    from tests.oidc_provider.process import Provider

    provider = Provider(tmp_path_factory.mktemp("oidc-provider"), free_port()).start()
    yield provider
    provider.stop()


@pytest.fixture
def oidc(settings, oidc_provider):
    """Chipmunk configured for the test provider (the three variables of the README)."""
    from django.core.cache import cache

    from gallery import identity

    settings.OIDC_ISSUER_URL = oidc_provider.issuer
    settings.OIDC_CLIENT_ID = "chipmunk"
    settings.OIDC_CLIENT_SECRET = oidc_provider_secret()
    settings.OIDC_PROVIDER_NAME = "Test ID"
    identity.forget()
    cache.clear()
    yield oidc_provider
    identity.forget()
    cache.clear()


def oidc_provider_secret() -> str:
    from tests.oidc_provider.process import SECRET

    return SECRET


# --- Channel layers ------------------------------------------------------------------------
@pytest.fixture(params=["memory", "redis"])
def layer(request, settings):
    """The in-memory layer, and Redis (skipped without one here, a failure under CI)."""
    if request.param == "redis":
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                               "CONFIG": {"hosts": [required_redis_url()],
                                                          "prefix": f"test-{uuid.uuid4().hex[:8]}"}}}
    else:
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    yield request.param
    channel_layers.backends.clear()
