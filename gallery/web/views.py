"""The gallery website: the timeline grid, its tiles, the upload form, share pages and the login doors."""

from __future__ import annotations

from functools import wraps

from django.contrib import admin, messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from gallery.exceptions import ChipmunkError, Throttled, WrongPassword
from gallery.models import Media
from gallery.services.media import media_ingest
from gallery.sharing import (
    ORIGINAL_LEVEL,
    share_file_url,
    share_files,
    share_live,
    share_password_check,
    share_unlock_cookie,
    share_unlocked,
)
from gallery.throttle import throttle_check, throttle_fail

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


@require_http_methods(["GET", "HEAD", "POST"])
def share(request, token):
    """A share link's page: its grid and lightbox, a password form first when protected, the
    same 404 page for unknown, revoked and expired links. Works without an account."""
    found = share_live(token)
    if found is None:
        return render(request, "gallery/share_missing.html", status=404)
    if found.has_password and not share_unlocked(request, found):
        return _share_password(request, found)
    media = Media.objects.shared_by(found).timeline().select_related("owner").prefetch_related("variants")
    page = Paginator(media, PAGE_SIZE).get_page(request.GET.get("page"))
    items = [_share_item(found, m) for m in page]
    title = found.album.title if found.album_id else (items[0]["media"].original_filename if items else "")
    return render(request, "gallery/share.html", {"share": found, "page": page, "items": items, "title": title})


def _share_item(found, media) -> dict:
    files = share_files(found, media)
    variants = files["variants"]
    thumb = variants.get("3s") or variants.get("3")
    large = next((variants[level] for level in ("6", "5", "4", "3") if level in variants), None)
    playable = next((level for level in ("play", "webm") if level in variants), None)
    if playable is None and media.kind in (Media.Kind.VIDEO, Media.Kind.AUDIO) and files["original"]:
        playable = ORIGINAL_LEVEL  # the original is the playable file and this share sends it
    return {"media": media, "thumb": thumb, "thumb_url": share_file_url(found, media, thumb.level) if thumb else "",
            "large_url": share_file_url(found, media, large.level) if large else "",
            "play_url": share_file_url(found, media, playable) if playable else "",
            "download_url": (files["original"] + "?download=1") if files["original"] else ""}


def _share_password(request, found):
    error, status = "", 200
    if request.method == "POST":
        try:
            share_password_check(request, found, request.POST.get("password", ""))
        except Throttled as exc:
            response = render(request, "gallery/share_password.html",
                              {"error": "Too many wrong passwords. Try again later."}, status=429)
            response["Retry-After"] = str(exc.extra["retry_after"])
            return response
        except WrongPassword:
            error, status = "Wrong password.", 403
        else:
            return share_unlock_cookie(redirect(request.path), found)
    return render(request, "gallery/share_password.html", {"error": error}, status=status)


def throttled_login(view):
    """A login view whose POSTs count against the account and the client address
    (gallery.throttle): while either is over its limit, 429 before the password is checked."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if request.method != "POST":
            return view(request, *args, **kwargs)
        keys = [("login-account", request.POST.get("username", "").strip().lower()),
                ("login-address", request.META.get("REMOTE_ADDR") or "unknown")]
        wait = max(throttle_check(scope, key) for scope, key in keys)
        if wait:
            response = render(request, "registration/throttled.html", {"retry_after": wait}, status=429)
            response["Retry-After"] = str(wait)
            return response
        response = view(request, *args, **kwargs)
        # Both login views answer a refused password with the form again (200), a login with a redirect.
        if response.status_code == 200:
            for scope, key in keys:
                throttle_fail(scope, key)
        return response

    return wrapped


login = throttled_login(auth_views.LoginView.as_view())
admin_login = throttled_login(admin.site.login)
