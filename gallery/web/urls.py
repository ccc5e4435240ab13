from __future__ import annotations

from django.urls import path, re_path

from gallery.web import views

app_name = "gallery"

urlpatterns = [
    path("", views.timeline, name="timeline"),
    path("upload/", views.upload, name="upload"),
    path("tiles/<uuid:media_id>/", views.tile, name="tile"),
    re_path(r"^s/(?P<token>[A-Za-z0-9_-]{1,64})/$", views.share, name="share"),
]
