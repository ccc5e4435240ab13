from __future__ import annotations

from django.urls import path, re_path

from gallery.web import views

app_name = "gallery"

urlpatterns = [
    path("", views.timeline, name="timeline"),
    path("upload/", views.upload, name="upload"),
    path("tiles/<uuid:media_id>/", views.tile, name="tile"),
    path("info/<uuid:media_id>/", views.info, name="info"),
    path("albums/", views.albums, name="albums"),
    path("albums/<str:album_id>/", views.album, name="album"),
    path("map/", views.map_page, name="map"),
    path("shares/", views.shares, name="shares"),
    path("trash/", views.trash, name="trash"),
    path("vault/", views.vault, name="vault"),
    path("settings/", views.account_settings, name="settings"),
    re_path(r"^s/(?P<token>[A-Za-z0-9_-]{1,64})/$", views.share, name="share"),
]
