"""/api/v1/vault/: set up, unlock, lock, status, passphrase; the vault's items (unlocked only).

The vault is unlocked per credential (gallery.vault.keys): a web session gets its client
secret in an HttpOnly cookie of its own at unlock, a bearer token derives it from itself.
Items come from the one visibility rule with this credential's unlock; their sealed
metadata is decrypted for the answer only.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.db.models import Prefetch
from rest_framework import status
from rest_framework.decorators import api_view
from rest_framework.response import Response

from gallery.exceptions import NotFound, VaultLocked, VaultNotSetUp
from gallery.models import Media, Variant, VaultKeyring
from gallery.services.media import media_delete
from gallery.services.vault import vault_change_passphrase, vault_lock, vault_setup, vault_status, vault_unlock
from gallery.services.vault_media import vault_move_out, vault_open, vault_reveal
from gallery.vault import keys
from media_api.serializers import VARIANT_FIELDS, MediaSerializer


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


@api_view(["GET"])
def vault_detail(request):
    """exists, unlocked, unlocked_until, count, bytes. Asking is not using: a page that polls
    this does not keep the vault from locking itself."""
    answer = vault_status(user=request.user, unlocked=keys.unlocked_for(request, renew=False))
    answer["unlocked_until"] = _iso(answer["unlocked_until"])
    return Response(answer)


@api_view(["POST"])
def setup(request):
    recovery_key = vault_setup(user=request.user, passphrase=request.data.get("passphrase"))
    return Response({"recovery_key": recovery_key}, status=status.HTTP_201_CREATED)


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


@api_view(["POST"])
def lock(request):
    vault_lock(user=request.user, credential=keys.credential_of(request))
    response = Response(status=status.HTTP_204_NO_CONTENT)
    if keys.COOKIE in request.COOKIES:
        response.delete_cookie(keys.COOKIE, path="/", samesite="Strict")
    return response


@api_view(["POST"])
def passphrase(request):
    vault_change_passphrase(user=request.user, new=request.data.get("new"), old=request.data.get("old"),
                            recovery_key=request.data.get("recovery_key"))
    return Response(status=status.HTTP_204_NO_CONTENT)


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


@api_view(["GET", "DELETE"])
def media_item(request, media_id):
    unlocked = require_unlocked(request)
    media = _item(request, unlocked, media_id)
    if request.method == "DELETE":
        media_delete(media=media)
        return Response(status=status.HTTP_204_NO_CONTENT)
    return Response(revealed_json(media, unlocked))


@api_view(["POST"])
def move_to_library(request, media_id):
    unlocked = require_unlocked(request)
    media = vault_move_out(media=_item(request, unlocked, media_id), unlocked=unlocked)
    return Response(MediaSerializer(Media.objects.prefetch_related("variants").get(pk=media.pk)).data)
