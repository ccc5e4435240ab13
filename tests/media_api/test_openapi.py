"""The OpenAPI description is served, valid, and true: schemathesis generates requests for every
operation it describes and sends them to a live server (uvicorn, the production ASGI app), with
an API key of a user who has media. No answer may be a 5xx, and every answer must match the
status codes, content types, headers and bodies the schema promises."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import requests
import schemathesis
from django.contrib.staticfiles import finders
from hypothesis import HealthCheck, given, settings
from PIL import Image
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gallery.services.accounts import apikey_create, user_create
from gallery.services.media import media_ingest


@schemathesis.serializer("application/offset+octet-stream")
def tus_chunk(ctx, value) -> bytes:
    """tus bodies are raw bytes (a generated binary string, or text as UTF-8)."""
    return value if isinstance(value, bytes) else str(value).encode()


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


@pytest.fixture
def caller(transactional_db):
    """A user with two photos and an API key with every scope."""
    user = user_create(username="schema-user", password="schema-password", quota_bytes=10**9)
    for colour in ("red", "blue"):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), colour).save(buffer, "JPEG")
        media_ingest(owner=user, stream=io.BytesIO(buffer.getvalue()), size=buffer.tell(),
                     filename=f"{colour}.jpg", content_type="image/jpeg")
    _, raw = apikey_create(user=user, name="schemathesis", scopes=["media.read", "media.read_write"])
    return raw


def test_every_operation_keeps_its_promises(live_asgi, caller):
    # One loop over the operations rather than schemathesis' pytest plugin, which does not
    # run under pytest 9; a failure names the operation and the request that broke it.
    schema = schemathesis.openapi.from_url(live_asgi.url("/api/schema/"))
    headers = {"Authorization": f"Bearer {caller}"}
    failures, ran = [], []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def exercise(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        ran.append(operation.label)
        try:
            exercise()
        except (Exception, BaseExceptionGroup) as exc:  # every operation runs; failures are reported together
            failures.append(f"{operation.label}: {exc}\n{''.join(str(e) for e in getattr(exc, 'exceptions', ()))}")
    assert len(ran) >= 12, ran
    assert not failures, "\n\n".join(failures)


@pytest.mark.django_db(transaction=True)
def test_schema_and_docs_are_served_offline(live_asgi):
    spec = requests.get(live_asgi.url("/api/schema/"), headers={"Accept": "application/json"}, timeout=10)
    assert spec.status_code == 200
    document = spec.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for expected in ("/api/v1/media/", "/api/v1/media/{id}/", "/api/v1/uploads/", "/api/v1/uploads/{upload_id}/",
                     "/api/v1/direct-uploads/", "/api/v1/usage/", "/api/v1/me/"):
        assert expected in paths, expected
    # The tus operations are described with their headers, and every error is the one body.
    patch = paths["/api/v1/uploads/{upload_id}/"]["patch"]
    assert {p["name"] for p in patch["parameters"] if p["in"] == "header"} >= {"Tus-Resumable", "Upload-Offset"}
    assert "application/offset+octet-stream" in patch["requestBody"]["content"]
    assert patch["responses"]["4XX"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert {"apiKey", "providerToken", "session"} <= set(document["components"]["securitySchemes"])

    docs = requests.get(live_asgi.url("/api/docs/"), timeout=10)
    assert docs.status_code == 200
    html = docs.text
    # Every asset comes from this server: the page works offline and under the CSP.
    assert "/static/vendor/swagger-ui-dist-5.35.0/swagger-ui-bundle.js" in html
    assert "http://" not in html.replace(live_asgi.url(""), "") and "https://" not in html
    assert "<style>" not in html and "<script>" not in html
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css", "LICENSE"):
        found = finders.find(f"vendor/swagger-ui-dist-5.35.0/{asset}")  # collectstatic ships it
        assert found and Path(found).stat().st_size > 1000, asset
    script = requests.get(live_asgi.url("/api/docs/?script="), timeout=10)
    assert script.status_code == 200 and "SwaggerUIBundle" in script.text
