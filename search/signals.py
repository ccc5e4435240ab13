"""What search listens to (connected by SearchConfig.ready()): every change to what a
document holds becomes search.indexing.media_changed, so gallery never calls search.

- Media saved or deleted (processing, edits, trash, restore, vault: any .save() or .delete());
- tags and albums of a media changed (m2m_changed, in either direction, clear included);
- an album or tag renamed or deleted (their media's titles and tags);
- a user's time zone changed (local dates of media whose offset is unknown);
- gallery.signals.media_changed, sent by code that changes media with queryset .update().
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save

from gallery import jobs
from gallery import signals as gallery_signals
from gallery.models import Album, Media, Tag, User
from search.indexing import REINDEX_USER_JOB, media_changed


def _media_saved(sender, instance: Media, raw: bool = False, **kwargs: Any) -> None:
    if not raw:
        media_changed([instance.pk])


def _media_deleted(sender, instance: Media, **kwargs: Any) -> None:
    media_changed([instance.pk])


def _relation_changed(sender, instance, action: str, reverse: bool, model, pk_set, **kwargs: Any) -> None:
    """Media.tags and Album.media: which media changed depends on the side that was used."""
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    if isinstance(instance, Media):
        media_changed([instance.pk])
    elif action == "pre_clear":  # an album or tag loses all its media: note them before they go
        media_changed(instance.media.values_list("pk", flat=True))
    else:
        media_changed(pk_set or ())


def _remember_label(sender, instance, raw: bool = False, **kwargs: Any) -> None:
    """Before an album or tag is saved: its current title/name, to see whether it changes."""
    field = "title" if sender is Album else "name"
    instance._search_label_before = (
        sender.objects.filter(pk=instance.pk).values_list(field, flat=True).first() if instance.pk else None)


def _label_saved(sender, instance, created: bool, raw: bool = False, **kwargs: Any) -> None:
    field = "title" if sender is Album else "name"
    if not created and not raw and getattr(instance, "_search_label_before", None) != getattr(instance, field):
        media_changed(instance.media.values_list("pk", flat=True))


def _label_deleted(sender, instance, **kwargs: Any) -> None:
    # Before the delete: its m2m rows go with it, without an m2m_changed.
    media_changed(instance.media.values_list("pk", flat=True))


def _user_before_save(sender, instance: User, update_fields=None, raw: bool = False, **kwargs: Any) -> None:
    instance._search_zone_before = None
    if raw or instance._state.adding or (update_fields is not None and "time_zone" not in update_fields):
        return  # logins save last_login only: no query for them
    instance._search_zone_before = User.objects.filter(pk=instance.pk).values_list("time_zone", flat=True).first()


def _user_saved(sender, instance: User, created: bool, raw: bool = False, **kwargs: Any) -> None:
    before = getattr(instance, "_search_zone_before", None)
    if before is not None and before != instance.time_zone:
        user_id = str(instance.pk)
        transaction.on_commit(lambda: jobs.enqueue(REINDEX_USER_JOB, {"user_id": user_id}), robust=True)


def _gallery_media_changed(sender, media_ids, **kwargs: Any) -> None:
    media_changed(media_ids)


def connect() -> None:
    uid = "search"
    post_save.connect(_media_saved, sender=Media, dispatch_uid=f"{uid}-media-saved")
    post_delete.connect(_media_deleted, sender=Media, dispatch_uid=f"{uid}-media-deleted")
    m2m_changed.connect(_relation_changed, sender=Media.tags.through, dispatch_uid=f"{uid}-tags")
    m2m_changed.connect(_relation_changed, sender=Album.media.through, dispatch_uid=f"{uid}-albums")
    for model in (Album, Tag):
        pre_save.connect(_remember_label, sender=model, dispatch_uid=f"{uid}-{model.__name__}-before")
        post_save.connect(_label_saved, sender=model, dispatch_uid=f"{uid}-{model.__name__}-saved")
        pre_delete.connect(_label_deleted, sender=model, dispatch_uid=f"{uid}-{model.__name__}-deleted")
    pre_save.connect(_user_before_save, sender=User, dispatch_uid=f"{uid}-user-before")
    post_save.connect(_user_saved, sender=User, dispatch_uid=f"{uid}-user-saved")
    gallery_signals.media_changed.connect(_gallery_media_changed, dispatch_uid=f"{uid}-gallery-media-changed")
