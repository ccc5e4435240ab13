from __future__ import annotations

from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path, re_path
from django.views.defaults import page_not_found
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from gallery import health
from gallery.delivery import views as delivery
from gallery.login import LogoutView
from gallery.web import views as web

urlpatterns = [
    # Before admin.site.urls, so the admin's login is the throttled one.
    path("admin/login/", web.admin_login),
    path("admin/", admin.site.urls),
    path("login/", web.login, name="login"),
    # Ends the provider's session too when the login came from there (gallery.login.provider_logout_url).
    # The session's vault is locked first (gallery.login.LogoutView).
    path("logout/", LogoutView.as_view(), name="logout"),
    path("oidc/", include("mozilla_django_oidc.urls")),  # authenticate/ and callback/ (gallery.login)
    path("health/", health.health, name="health"),
    path("api/v1/", include("media_api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    # Tokens are URL-safe base64 and levels short names: anything else is 404 before a query.
    re_path(r"^m/(?P<token>[A-Za-z0-9_-]{1,64})/(?P<level>[0-9a-z]{1,8})/$", delivery.serve_media, name="media-file"),
    re_path(r"^s/(?P<share_token>[A-Za-z0-9_-]{1,64})/m/(?P<token>[A-Za-z0-9_-]{1,64})/(?P<level>[0-9a-z]{1,8})/$",
            delivery.serve_shared_media, name="share-file"),
    path("search/", include("search.urls")),
    path("", include("gallery.web.urls")),
]


def not_found(request, exception=None):
    """A URL nothing answers: the API's JSON error under /api/, the site's 404 page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "not_found", "detail": "no such API endpoint or object"}, status=404)
    return page_not_found(request, exception)


handler404 = not_found
