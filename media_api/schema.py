"""The OpenAPI 3 description of /api/v1/ (drf-spectacular): how callers authenticate, the one
error body, and the parts introspection cannot see (tus headers, slash-less aliases).

Served at /api/schema/ and read by the docs at /api/docs/ (Swagger UI vendored under
static/vendor/swagger-ui/, loaded from our origin only). tests/media_api/test_openapi.py runs
schemathesis against a live server over every operation described here.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes
from rest_framework import serializers


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "gallery.auth.ApiKeyAuthentication"
    name = "apiKey"
    priority = 1

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "chip_…",
                "description": "An API key made with `manage.py apikey create` or on the Settings page; "
                               "scopes media.read (GET only) and media.read_write."}


class ProviderTokenScheme(OpenApiAuthenticationExtension):
    target_class = "gallery.auth.ProviderTokenAuthentication"
    name = "providerToken"
    priority = 1

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "An access token from the OpenID provider (OIDC_ISSUER_URL) carrying "
                               "media.read or media.read_write in its scope claim."}


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "gallery.auth.SessionAuthentication"
    name = "session"
    priority = 1

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME,
                "description": "The website's session; writes also need the CSRF token in X-CSRFToken."}


class ErrorSerializer(serializers.Serializer):
    """Every 4xx of the API: a stable code and a sentence for people; some add fields."""

    error = serializers.CharField(help_text="a stable code: invalid, not_found, quota_exceeded, …")
    detail = serializers.CharField(help_text="what was wrong, for people")


def page_of(results_schema: dict) -> dict:
    """The schema of a keyset page whose results are `results_schema` (what KeysetPagination answers)."""
    return {
        "type": "object", "required": ["count", "next", "previous", "results"],
        "properties": {
            "count": {"type": "integer", "description": "the whole list's size"},
            "next": {"type": "string", "format": "uri", "nullable": True},
            "previous": {"type": "string", "format": "uri", "nullable": True},
            "results": results_schema,
        },
    }


TUS_RESUMABLE = OpenApiParameter("Tus-Resumable", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True,
                                 enum=["1.0.0"], description="the protocol version; every request but OPTIONS")


def drop_slashless_aliases(endpoints, **kwargs):
    """Paths served under two spellings (tus clients drop the slash): the schema lists the canonical one."""
    paths = {path for path, *_ in endpoints}
    return [endpoint for endpoint in endpoints
            if endpoint[0].endswith("/") or endpoint[0] + "/" not in paths]


def errors_everywhere(result, generator, request, public):
    """Every operation may answer a 4xx, always as the error body (media_api.errors)."""
    error_ref = {"$ref": "#/components/schemas/Error"}
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = {
        "type": "object", "required": ["error", "detail"],
        "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
        "description": "Every 4xx answer of the API; some errors add fields (quota, fields, retry_after).",
    }
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method in ("parameters", "summary", "description", "servers"):
                continue
            responses = operation.setdefault("responses", {})
            for code, response in list(responses.items()):
                if code.startswith("4") and "content" not in response:
                    response["content"] = {"application/json": {"schema": error_ref}}
            if method != "head":
                responses.setdefault("4XX", {"description": "an error", "content": {
                    "application/json": {"schema": error_ref}}})
    return result
