"""/api/v1/vault/: set up, unlock, lock, status, passphrase; the vault's items (unlocked only).

The vault is unlocked per credential (gallery.vault.keys): a web session gets its client
secret in an HttpOnly cookie of its own at unlock, a bearer token derives it from itself.
Items come from the one visibility rule with this credential's unlock; their sealed
metadata is decrypted for the answer only.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.response import Response

from gallery.exceptions import NotFound, VaultLocked, VaultNotSetUp
from gallery.models import Media, Variant, VaultKeyring
from gallery.services.media import media_delete
from gallery.services.vault import vault_change_passphrase, vault_lock, vault_setup, vault_status, vault_unlock
from gallery.services.vault_media import vault_move_out, vault_open, vault_reveal
from gallery.vault import keys
from media_api.serializers import VARIANT_FIELDS, MediaSerializer

STATUS = inline_serializer("VaultStatus", {
    "exists": serializers.BooleanField(), "unlocked": serializers.BooleanField(),
    "unlocked_until": serializers.DateTimeField(allow_null=True, help_text="when this credential locks if unused"),
    "count": serializers.IntegerField(), "bytes": serializers.IntegerField()})
PASSPHRASE = inline_serializer("VaultPassphrase", {"passphrase": serializers.CharField(min_length=10)})
UNLOCK = inline_serializer("VaultUnlock", {"passphrase": serializers.CharField(required=False),
                                           "recovery_key": serializers.CharField(required=False)})
UNLOCKED = inline_serializer("VaultUnlocked", {"unlocked_until": serializers.DateTimeField()})
CHANGE = inline_serializer("VaultPassphraseChange", {
    "old": serializers.CharField(required=False), "recovery_key": serializers.CharField(required=False),
    "new": serializers.CharField(min_length=10)})
PAGE = inline_serializer("VaultMediaPage", {
    "count": serializers.IntegerField(), "next": serializers.CharField(allow_null=True),
    "previous": serializers.CharField(allow_null=True), "results": MediaSerializer(many=True)})


def _iso(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, tz=UTC).isoformat()


def require_unlocked(request) -> keys.Unlocked:
    """This credential's unlock; 423 vault_locked (404 vault_not_set_up without a vault)."""
    unlocked = keys.unlocked_for(request)
    if unlocked is None:
        if not VaultKeyring.objects.filter(user=request.user).exists():
            raise VaultNotSetUp("this account has no vault yet; set one up first")
        raise VaultLocked("the vault is locked: unlock it with the passphrase first")
    return unlocked


def revealed_json(media: Media, unlocked: keys.Unlocked) -> dict:
    _, meta = vault_open(media=media, unlocked=unlocked)
    return MediaSerializer(vault_reveal(media=media, meta=meta)).data


def _vault_items(request, unlocked: keys.Unlocked):
    variants = Prefetch("variants", queryset=Variant.objects.only(*VARIANT_FIELDS))
    return (Media.objects.visible_to(request.user, vault=unlocked).filter(in_vault=True)
            .select_related("owner").prefetch_related(variants))


@extend_schema(summary="The vault's status", operation_id="vault_status", responses=STATUS)
@api_view(["GET"])
def vault_detail(request):
    """exists, unlocked, unlocked_until, count, bytes. Asking is not using: a page that polls
    this does not keep the vault from locking itself."""
    answer = vault_status(user=request.user, unlocked=keys.unlocked_for(request, renew=False))
    answer["unlocked_until"] = _iso(answer["unlocked_until"])
    return Response(answer)


@extend_schema(summary="Set up the vault", operation_id="vault_setup", request=PASSPHRASE, responses={
    201: inline_serializer("VaultRecoveryKey", {"recovery_key": serializers.CharField(help_text="shown once")})})
@api_view(["POST"])
def setup(request):
    recovery_key = vault_setup(user=request.user, passphrase=request.data.get("passphrase"))
    return Response({"recovery_key": recovery_key}, status=status.HTTP_201_CREATED)


@extend_schema(summary="Unlock the vault for this credential", operation_id="vault_unlock", request=UNLOCK,
               responses=UNLOCKED)
@api_view(["POST"])
def unlock(request):
    credential = keys.credential_of(request)
    if credential is None:
        raise VaultLocked("this credential cannot hold an unlocked vault")
    result = vault_unlock(user=request.user, credential=credential, passphrase=request.data.get("passphrase"),
                          recovery_key=request.data.get("recovery_key"))
    response = Response({"unlocked_until": _iso(result.unlocked.until)})
    if result.credential.kind == "session":
        response.set_cookie(keys.COOKIE, keys.cookie_value(result.credential.secret), httponly=True,
                            samesite="Strict", path="/")
    return response


@extend_schema(summary="Lock the vault for this credential", operation_id="vault_lock", request=None,
               responses={204: None})
@api_view(["POST"])
def lock(request):
    vault_lock(user=request.user, credential=keys.credential_of(request))
    response = Response(status=status.HTTP_204_NO_CONTENT)
    if keys.COOKIE in request.COOKIES:
        response.delete_cookie(keys.COOKIE, path="/", samesite="Strict")
    return response


@extend_schema(summary="Change the vault's passphrase", operation_id="vault_passphrase", request=CHANGE,
               responses={204: None})
@api_view(["POST"])
def passphrase(request):
    vault_change_passphrase(user=request.user, new=request.data.get("new"), old=request.data.get("old"),
                            recovery_key=request.data.get("recovery_key"))
    return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(summary="The vault's items (unlocked)", operation_id="vault_media_list", responses=PAGE)
@api_view(["GET"])
def media_list(request):
    """Every vault item, newest capture first (dates are sealed: sorted after decryption)."""
    unlocked = require_unlocked(request)
    items = [revealed_json(media, unlocked) for media in _vault_items(request, unlocked)]
    items.sort(key=lambda item: (item["taken_at"], item["id"]), reverse=True)
    return Response({"count": len(items), "next": None, "previous": None, "results": items})


def _item(request, unlocked: keys.Unlocked, media_id) -> Media:
    media = _vault_items(request, unlocked).filter(pk=media_id).first()
    if media is None:
        raise NotFound("no such media")
    return media


@extend_schema(methods=["GET"], summary="One vault item (unlocked)", operation_id="vault_media_retrieve",
               responses=MediaSerializer)
@extend_schema(methods=["DELETE"], summary="Delete a vault item (unlocked)", operation_id="vault_media_destroy",
               responses={204: None})
@api_view(["GET", "DELETE"])
def media_item(request, media_id):
    unlocked = require_unlocked(request)
    media = _item(request, unlocked, media_id)
    if request.method == "DELETE":
        media_delete(media=media)
        return Response(status=status.HTTP_204_NO_CONTENT)
    return Response(revealed_json(media, unlocked))


@extend_schema(summary="Move a vault item back to the library (unlocked)", operation_id="vault_media_move_out",
               request=None, responses=MediaSerializer)
@api_view(["POST"])
def move_to_library(request, media_id):
    unlocked = require_unlocked(request)
    media = vault_move_out(media=_item(request, unlocked, media_id), unlocked=unlocked)
    return Response(MediaSerializer(Media.objects.prefetch_related("variants").get(pk=media.pk)).data)
