"""The gallery website: the timeline grid, its tiles and the upload form."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from gallery.exceptions import ChipmunkError
from gallery.models import Media
from gallery.services.media import media_ingest

PAGE_SIZE = 120


@login_required
def timeline(request):
    media = Media.objects.visible_to(request.user).timeline().prefetch_related("variants")
    page = Paginator(media, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "gallery/timeline.html", {"page": page})


@login_required
def tile(request, media_id):
    """One grid tile, rendered by the same template as the timeline (live.js swaps it in)."""
    media = get_object_or_404(Media.objects.visible_to(request.user).prefetch_related("variants"), pk=media_id)
    return render(request, "gallery/_tile.html", {"media": media})


@login_required
@require_POST
def upload(request):
    files = request.FILES.getlist("file")
    if not files:
        messages.error(request, "Choose at least one file to upload.")
    for file in files:
        try:
            result = media_ingest(owner=request.user, stream=file, size=file.size, filename=file.name,
                                  content_type=file.content_type)
        except ChipmunkError as exc:
            messages.error(request, f"{file.name}: {exc.detail}")
            continue
        if result.created:
            messages.success(request, f"{file.name}: uploaded")
        else:
            messages.info(request, f"{file.name}: already in your library")
    return redirect("gallery:timeline")
