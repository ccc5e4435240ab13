"""Helpers for the vault tests: small Argon2id parameters, a vault set up and unlocked."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def vault_settings(settings, tmp_path):
    """Argon2id small enough for tests (the defaults are tested once, in test_vault_keys),
    and a processing temp dir of the test's own, so tests can look into it."""
    settings.VAULT_ARGON2_MEMORY_KIB = 1024
    settings.VAULT_ARGON2_TIME_COST = 1
    settings.VAULT_ARGON2_PARALLELISM = 1
    temp = tmp_path / "vault-tmp"
    temp.mkdir()
    settings.VAULT_TEMP_DIR = str(temp)
    from django.core.cache import cache

    cache.clear()
    yield settings
    cache.clear()


def vault_open_for(client, passphrase: str = PASSPHRASE) -> str:
    """Set up (first time) and unlock the vault of the client's user; the recovery key."""
    response = client.post("/api/v1/vault/setup", {"passphrase": passphrase}, format="json")
    assert response.status_code == 201, response.content
    unlocked = client.post("/api/v1/vault/unlock", {"passphrase": passphrase}, format="json")
    assert unlocked.status_code == 200, unlocked.content
    return response.json()["recovery_key"]


XMP = """<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">
<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{marker} description</rdf:li></rdf:Alt></dc:description>
<dc:subject><rdf:Bag><rdf:li>{marker}keyword</rdf:li></rdf:Bag></dc:subject>
</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>"""


def marked_jpeg(source: Path, marker: str) -> bytes:
    """A JPEG of `source` carrying `marker` in its EXIF ImageDescription, a COM comment, and
    its XMP description and keywords."""
    image = Image.open(source)
    exif = image.getexif()
    exif[0x010E] = marker
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92, exif=exif.tobytes(), comment=marker.encode(),
               xmp=XMP.format(marker=marker).encode())
    return out.getvalue()


def vault_upload(client, data: bytes, name: str, capture):
    """POST a file into the vault and run what the commit queued (processing) inline."""
    stream = io.BytesIO(data)
    stream.name = name
    with capture(execute=True):
        return client.post("/api/v1/media/", {"file": stream, "vault": "true"}, format="multipart")


def cache_keys() -> list[str]:
    """Every key in the default cache (LocMemCache here, Redis when REDIS_URL is set)."""
    from django.core.cache import cache

    backend = getattr(cache, "_cache", None)
    if isinstance(backend, dict):
        return [str(k) for k in backend]
    return [k.decode() for k in backend.get_client().scan_iter("*")]
