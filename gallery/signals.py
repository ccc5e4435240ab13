"""Signals gallery sends so other apps (search) can follow changes that Django's model
signals do not see: a queryset .update(), bulk writes. Model saves, deletes and m2m changes
(tags, albums) need nothing more: search listens to those itself.

Send `media_changed` with the ids of media rows changed that way, inside the transaction
that changes them (receivers act after commit):

    signals.media_changed.send(sender=Media, media_ids=[media.pk])
"""

from __future__ import annotations

from django.dispatch import Signal

media_changed = Signal()  # kwargs: media_ids (an iterable of Media ids)
