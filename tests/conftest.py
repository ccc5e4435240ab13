"""The cast and the stage for every test.

alice owns things, bob is someone she shares with, charlie is a stranger who must see
nothing. Storage runs on local disk or on S3 through a moto server on a loopback port
(real HTTP, real boto3); `storage` is parametrised over both.
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import boto3
import pytest
from django.core.files.storage import storages
from rest_framework.test import APIClient

from config.settings import local_storage_config, s3_storage_config
from gallery.services.accounts import apikey_create, user_create

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
S3_KEYS = {"access_key": "testing", "secret_key": "testing"}
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def corpus() -> Path:
    assert CORPUS.is_dir(), f"the sample corpus is missing at {CORPUS}"
    return CORPUS


# --- S3 through a moto server ------------------------------------------------------------
class MotoServer:
    """A moto S3 server in a thread of this process, reached over real HTTP."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def start(self) -> MotoServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=S3_KEYS["access_key"], aws_secret_access_key=S3_KEYS["secret_key"])

    def new_bucket(self) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def storage_config(self, bucket: str) -> dict:
        return s3_storage_config(bucket=bucket, endpoint_url=self.endpoint, region=REGION, **S3_KEYS)


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
