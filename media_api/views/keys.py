"""/api/v1/keys/: the signed-in person's API keys (list, create with the secret shown once, revoke).

Only a web session manages keys: a key (or a provider token) cannot mint or revoke keys, so a
leaked key cannot make itself permanent."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from gallery.auth import auth_kind
from gallery.models import ApiKey
from gallery.services.accounts import apikey_create, apikey_revoke


class ApiKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = fields


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=ApiKey.SCOPES), min_length=1, max_length=2)


class ApiKeyCreatedSerializer(ApiKeySerializer):
    secret = serializers.CharField(help_text="the key itself: shown in this answer only")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "secret"]
        read_only_fields = fields


def _session_only(request) -> None:
    if auth_kind(request.auth) != "session":
        raise PermissionDenied("API keys are managed from a signed-in web session only")


@extend_schema(methods=["GET"], summary="Your API keys (web session only)",
               responses=inline_serializer("ApiKeyList", {"results": ApiKeySerializer(many=True)}))
@extend_schema(methods=["POST"], summary="Make an API key (web session only); its secret is in this answer only",
               request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer})
@api_view(["GET", "POST"])
def keys(request):
    """GET: the caller's keys, newest first (revoked ones included). POST {name, scopes}: a new
    key; the answer's `secret` is the only time the key is shown."""
    _session_only(request)
    if request.method == "GET":
        rows = ApiKey.objects.filter(user=request.user).order_by("-created_at")
        return Response({"results": ApiKeySerializer(rows, many=True).data})
    data = ApiKeyCreateSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    key, raw = apikey_create(user=request.user, name=data.validated_data["name"],
                             scopes=data.validated_data["scopes"])
    return Response({**ApiKeySerializer(key).data, "secret": raw}, status=status.HTTP_201_CREATED)


@extend_schema(summary="Revoke an API key (web session only)", responses={204: None})
@api_view(["DELETE"])
def key_detail(request, key_id):
    """Revoke one of the caller's keys (204); another person's key is 404."""
    _session_only(request)
    key = get_object_or_404(ApiKey, pk=key_id, user=request.user)
    apikey_revoke(key=key)
    return Response(status=status.HTTP_204_NO_CONTENT)
