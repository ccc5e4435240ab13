from django.contrib.auth import views as auth_views
from django.http import JsonResponse
from django.urls import include, path, reverse
from oauth2_provider.views import ConnectDiscoveryInfoView


class Discovery(ConnectDiscoveryInfoView):
    """django-oauth-toolkit's discovery document, plus the introspection endpoint (as Keycloak,
    Authentik and Authelia advertise theirs)."""

    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        import json

        data = json.loads(response.content)
        data["introspection_endpoint"] = request.build_absolute_uri(reverse("oauth2_provider:introspect"))
        return JsonResponse(data)


urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(template_name="registration/login.html")),
    path("o/.well-known/openid-configuration", Discovery.as_view()),
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
]
