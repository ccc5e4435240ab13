"""The gallery website: the timeline grid, its tiles, the upload form and the login doors."""

from __future__ import annotations

from functools import wraps

from django.contrib import admin, messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from gallery.exceptions import ChipmunkError
from gallery.models import Media
from gallery.services.media import media_ingest
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
