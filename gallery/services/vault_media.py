"""Vault items: ingest, record, read the sealed metadata, move in and out of the library.

A vault item is a Media row with in_vault=True that keeps only an opaque id, the owner,
sizes, kind and state; its name, type, SHA-256, dates, place, camera, EXIF and details live
in one encrypted blob (VaultItem.sealed) under the item's file key, and its blobs are
encrypted under `<user-id>/vault/` (gallery.vault.blobs). Every function here needs the
credential's unlock (gallery.vault.keys.Unlocked); processing gets a one-time job key
(gallery.vault.jobkeys). Moves re-encrypt (or decrypt) into new blobs first, switch the
row in one transaction, and delete the old blobs after commit through a durable job.
"""

from __future__ import annotations

import mimetypes
import uuid
from datetime import datetime
from typing import IO, Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from gallery import events, jobs
from gallery.exceptions import Conflict, NotFound
from gallery.models import Album, Media, User, Variant, VaultItem, new_media_token
from gallery.processing.filetypes import SNIFF_BYTES, content_type_for, kind_for
from gallery.services.accounts import quota_check
from gallery.services.changes import media_changed
from gallery.services.media import IngestResult, clean_filename, usage_add
from gallery.services.metadata import media_tags_from_metadata
from gallery.services.vault import vault_digest, vault_file_key, vault_file_key_wrap
from gallery.storage import original_key as library_original_key
from gallery.storage import sha256_of
from gallery.storage import variant_key as library_variant_key
from gallery.vault import blobs, crypto, jobkeys
from gallery.vault.keys import Unlocked

# Row columns that describe the content: in the sealed metadata only, blank in a vault row.
SEALED_FIELDS = {
    "content_type": "application/octet-stream", "taken_at_offset_minutes": None, "taken_at_estimated": True,
    "width": None, "height": None, "duration": None, "latitude": None, "longitude": None, "altitude": None,
    "place_city": "", "place_region": "", "place_country": "", "camera_make": "", "camera_model": "",
    "exif": {}, "details": {}, "description": "", "taken_day": None, "taken_month": None,
    "taken_at_manual": False, "location_manual": False,
}


def _item_of(media: Media) -> VaultItem:
    item = VaultItem.objects.filter(media_id=media.pk).first()
    if item is None:
        raise NotFound("no such media")
    return item


def vault_open(*, media: Media, unlocked: Unlocked, item: VaultItem | None = None) -> tuple[bytes, dict[str, Any]]:
    """The file key and the metadata of a vault item (its VaultItem row read unless given)."""
    item = item or _item_of(media)
    file_key = vault_file_key(unlocked=unlocked, media_id=media.pk, wrapped=item.wrapped_key)
    return file_key, blobs.meta_open(file_key=file_key, media_id=media.pk, sealed=item.sealed)


def vault_reveal(*, media: Media, meta: dict[str, Any]) -> Media:
    """The row as the owner sees it: the sealed fields put back on this instance (never saved;
    only the read paths of an unlocked credential call this)."""
    media.original_filename = meta.get("name", "")
    media.sha256 = meta.get("sha256", "")
    for name in SEALED_FIELDS:
        if name in meta:
            setattr(media, name, meta[name])
    if meta.get("taken_at"):
        media.taken_at = datetime.fromisoformat(meta["taken_at"])
    dims = meta.get("variants", {})
    for variant in media.variants.all():
        variant.width, variant.height = dims.get(variant.level, (variant.width, variant.height))
    media._vault_revealed = True
    return media


def _meta_from_row(media: Media) -> dict[str, Any]:
    meta = {name: getattr(media, name) for name in SEALED_FIELDS}
    meta.update(name=media.original_filename, sha256=media.sha256, taken_at=media.taken_at.isoformat(),
                variants={v.level: [v.width, v.height] for v in media.variants.all()},
                keywords=list(media.tags.values_list("name", flat=True)))
    return meta


def vault_meta_update(*, media_id, file_key: bytes, changes: dict[str, Any], variants: dict[str, list[int]]) -> None:
    """Merge what processing learned into the sealed metadata (under the item's row lock)."""
    with transaction.atomic():
        item = VaultItem.objects.select_for_update().get(media_id=media_id)
        meta = blobs.meta_open(file_key=file_key, media_id=media_id, sealed=item.sealed)
        meta.update(changes)
        meta["details"] = {**meta.get("details", {}), **changes.get("details", {})}
        meta["variants"] = {**meta.get("variants", {}), **variants}
        item.sealed = blobs.meta_seal(file_key=file_key, media_id=media_id, meta=meta)
        item.save(update_fields=["sealed"])


def vault_meta_read(*, media_id, file_key: bytes) -> dict[str, Any]:
    item = VaultItem.objects.get(media_id=media_id)
    return blobs.meta_open(file_key=file_key, media_id=media_id, sealed=item.sealed)


# --- Into the vault: uploads ---------------------------------------------------------------
def vault_ingest(*, owner: User, unlocked: Unlocked, stream: IO[bytes], size: int, filename: str,
                 content_type: str | None = None, file_modified_at: datetime | None = None) -> IngestResult:
    """Store an uploaded file as a new vault item: encrypted as it is read, then recorded."""
    quota_check(user=owner, requested=size)
    stream.seek(0)
    sha256 = sha256_of(stream)
    existing = Media.objects.same_bytes(owner_id=owner.pk, sha256=vault_digest(unlocked=unlocked, sha256=sha256),
                                        vault=True).first()
    if existing is not None:
        return IngestResult(media=existing, created=False)
    stream.seek(0)
    head = stream.read(SNIFF_BYTES)
    stream.seek(0)
    media_id, file_key = uuid.uuid4(), crypto.new_key()
    key = blobs.original_key(user_id=owner.pk, media_id=media_id)
    blobs.encrypt_to(key, file_key=file_key, media_id=media_id, level="0", size=size,
                     pieces=iter(lambda: stream.read(blobs.READ_CHUNK), b""))
    try:
        result = vault_record(owner=owner, unlocked=unlocked, media_id=media_id, file_key=file_key, key=key,
                              size=size, sha256=sha256, filename=filename, content_type=content_type, head=head,
                              file_modified_at=file_modified_at)
    except BaseException:
        blobs.delete_blobs([key])
        raise
    if not result.created:
        blobs.delete_blobs([key])
    return result


@transaction.atomic
def vault_record(*, owner: User, unlocked: Unlocked, media_id: uuid.UUID, file_key: bytes, key: str, size: int,
                 sha256: str, filename: str, content_type: str | None, head: bytes, reserved: int = 0,
                 file_modified_at: datetime | None = None) -> IngestResult:
    """Record an encrypted original as a vault item of `owner` (media_record's rules: dedup, here
    inside the vault only, quota under the user's row lock, reservation released, processing
    queued after commit with a one-time job key)."""
    locked = User.objects.select_for_update(no_key=True).get(pk=owner.pk)
    digest = vault_digest(unlocked=unlocked, sha256=sha256)
    existing = Media.objects.same_bytes(owner_id=locked.pk, sha256=digest, vault=True).first()
    if existing is not None:
        if reserved:
            User.objects.filter(pk=owner.pk).update(reserved_bytes=F("reserved_bytes") - reserved)
        return IngestResult(media=existing, created=False)
    if size > reserved:
        quota_check(user=locked, requested=size - reserved)
    filename = clean_filename(filename)
    real_type = content_type_for(filename=filename, declared=content_type, head=head)
    meta = {**SEALED_FIELDS, "name": filename, "content_type": real_type, "sha256": sha256,
            "taken_at": (file_modified_at or timezone.now()).isoformat(), "variants": {}}
    media = Media.objects.create(
        id=media_id, owner=locked, kind=kind_for(real_type, filename), original_filename="", size=size,
        sha256=digest, status=Media.Status.PENDING, original_key=key, in_vault=True, **SEALED_FIELDS)
    VaultItem.objects.create(media=media, wrapped_key=vault_file_key_wrap(unlocked=unlocked, media_id=media_id,
                                                                          file_key=file_key),
                             sealed=blobs.meta_seal(file_key=file_key, media_id=media_id, meta=meta))
    User.objects.filter(pk=owner.pk).update(used_bytes=F("used_bytes") + size,
                                            reserved_bytes=F("reserved_bytes") - reserved)
    usage_add(media=media, count=1)
    events.send_after_commit(owner.pk, "media.created", media_id=str(media.pk), status=media.status)
    queue = "video" if media.kind == Media.Kind.VIDEO else "default"
    jobs.enqueue("process_media", {"media_id": str(media.pk), **jobkeys.job_key_issue(media_id=media.pk,
                                                                                      file_key=file_key)},
                 queue=queue)
    return IngestResult(media=media, created=True)


# --- Moves ---------------------------------------------------------------------------------
def _old_blobs_delete_after_commit(media: Media, keys: list[tuple[str, int]]) -> None:
    """The old blobs go after commit, by a durable job (it survives a crash in between), and
    the block cache forgets their (plaintext, for library blobs) blocks at once."""
    jobs.enqueue("vault_delete_blobs", {"blobs": [[k, s] for k, s in keys if k], "owner": str(media.owner_id)})


def vault_move_in(*, media: Media, unlocked: Unlocked) -> Media:
    """Move a library media into the vault: its original and variants encrypted into new blobs,
    its descriptive columns sealed, its album and tag links dropped, its delivery token renewed.
    Nothing is lost if this stops anywhere: the row switches in one transaction."""
    media = Media.objects.prefetch_related("variants").get(pk=media.pk)
    if media.status == Media.Status.UPLOADING:
        raise Conflict("this media is still being uploaded")
    file_key = crypto.new_key()
    made: list[str] = []
    try:
        new_original = blobs.original_key(user_id=media.owner_id, media_id=media.pk)
        made.append(new_original)
        blobs.encrypt_to(new_original, file_key=file_key, media_id=media.pk, level="0", size=media.size,
                         pieces=blobs.iter_blob(media.original_key))
        new_variants = {}
        for variant in media.variants.all():
            key = blobs.variant_key(user_id=media.owner_id, media_id=media.pk)
            made.append(key)
            blobs.encrypt_to(key, file_key=file_key, media_id=media.pk, level=variant.level, size=variant.size,
                             pieces=blobs.iter_blob(variant.storage_key))
            new_variants[variant.pk] = key
        meta = _meta_from_row(media)
        with transaction.atomic():
            locked = Media.objects.select_for_update().filter(pk=media.pk, in_vault=False,
                                                              trashed_at__isnull=True).first()
            current = set(Variant.objects.filter(media_id=media.pk).values_list("pk", "storage_key"))
            if locked is None:
                raise NotFound("no such media")
            if locked.original_key != media.original_key or current != {(v.pk, v.storage_key)
                                                                          for v in media.variants.all()}:
                raise Conflict("this media changed while it was being moved; try again")
            usage_add(media=locked, count=-1)
            Album.objects.filter(cover=locked).update(cover=None)
            locked.albums.clear()
            locked.tags.clear()
            Media.objects.filter(pk=locked.pk).update(
                in_vault=True, original_filename="", original_key=new_original, token=new_media_token(),
                sha256=vault_digest(unlocked=unlocked, sha256=media.sha256), taken_at=media.created_at,
                updated_at=timezone.now(), **SEALED_FIELDS)
            for pk, key in new_variants.items():
                Variant.objects.filter(pk=pk).update(storage_key=key, width=0, height=0)
            VaultItem.objects.create(media_id=media.pk, sealed=blobs.meta_seal(file_key=file_key, media_id=media.pk,
                                                                                meta=meta),
                                     wrapped_key=vault_file_key_wrap(unlocked=unlocked, media_id=media.pk,
                                                                     file_key=file_key))
            locked.in_vault = True
            usage_add(media=locked, count=1)
            _old_blobs_delete_after_commit(media, [(media.original_key, media.size),
                                                   *((v.storage_key, v.size) for v in media.variants.all())])
            media_changed(owner_id=media.owner_id, media_ids=[media.pk])  # sync: gone from the library
            events.send_after_commit(media.owner_id, "media.deleted", media_id=str(media.pk))
    except BaseException:
        blobs.delete_blobs(made)
        raise
    return Media.objects.get(pk=media.pk)


_EXTENSIONS = {"image/webp": "webp", "video/mp4": "mp4", "video/webm": "webm", "image/jpeg": "jpg"}


def vault_move_out(*, media: Media, unlocked: Unlocked) -> Media:
    """Move a vault item back to the library: its blobs decrypted into new library blobs, its
    metadata back in the row's columns, its token renewed; the vault blobs deleted after commit."""
    media = Media.objects.prefetch_related("variants").get(pk=media.pk)
    file_key, meta = vault_open(media=media, unlocked=unlocked)
    storage_made: list[str] = []
    try:
        new_original = library_original_key(user_id=media.owner_id, media_id=media.pk, filename=meta.get("name", ""))
        storage_made.append(new_original)
        blobs.write_blob(new_original, blobs.decrypt_from(media.original_key, file_key=file_key, media_id=media.pk,
                                                          level="0"))
        new_variants = {}
        dims = meta.get("variants", {})
        for variant in media.variants.all():
            ext = _EXTENSIONS.get(variant.content_type) or (mimetypes.guess_extension(variant.content_type) or
                                                            ".bin").lstrip(".")
            key = library_variant_key(user_id=media.owner_id, media_id=media.pk,
                                      level=f"{variant.level}-{uuid.uuid4().hex[:8]}", ext=ext)
            storage_made.append(key)
            blobs.write_blob(key, blobs.decrypt_from(variant.storage_key, file_key=file_key, media_id=media.pk,
                                                     level=variant.level))
            new_variants[variant.pk] = (key, *dims.get(variant.level, (0, 0)))
        restored = {name: meta.get(name, blank) for name, blank in SEALED_FIELDS.items()}
        with transaction.atomic():
            locked = Media.objects.select_for_update().filter(pk=media.pk, in_vault=True).first()
            if locked is None:
                raise NotFound("no such media")
            if locked.original_key != media.original_key:
                raise Conflict("this media changed while it was being moved; try again")
            usage_add(media=locked, count=-1)
            Media.objects.filter(pk=locked.pk).update(
                in_vault=False, original_filename=clean_filename(meta.get("name", "")), original_key=new_original,
                sha256=meta.get("sha256", ""), token=new_media_token(), updated_at=timezone.now(),
                taken_at=datetime.fromisoformat(meta["taken_at"]) if meta.get("taken_at") else locked.taken_at,
                **restored)
            for pk, (key, width, height) in new_variants.items():
                Variant.objects.filter(pk=pk).update(storage_key=key, width=width, height=height)
            VaultItem.objects.filter(media_id=media.pk).delete()
            # Back in the library: its local capture day again (the timeline counts by it).
            locked = Media.objects.select_related("owner").get(pk=media.pk)
            locked.set_capture_day(locked.owner.time_zone)
            Media.objects.filter(pk=media.pk).update(taken_day=locked.taken_day, taken_month=locked.taken_month)
            usage_add(media=locked, count=1)
            if meta.get("keywords"):  # back as tags, as processing makes them for library media
                media_tags_from_metadata(media=locked, names=meta["keywords"])
            _old_blobs_delete_after_commit(media, [(media.original_key, 0),
                                                   *((v.storage_key, 0) for v in media.variants.all())])
            media_changed(owner_id=media.owner_id, media_ids=[media.pk])  # sync: back in the library
            events.send_after_commit(media.owner_id, "media.created", media_id=str(media.pk), status=locked.status)
    except BaseException:
        blobs.delete_blobs(storage_made)
        raise
    return Media.objects.get(pk=media.pk)
