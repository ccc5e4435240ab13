from __future__ import annotations

from django.contrib import admin
from django.template.defaultfilters import filesizeformat

from gallery.admin.paging import CheapCountPaginator
from gallery.models import Album, ApiKey, Export, Tag
from gallery.services.accounts import apikey_revoke
from gallery.services.exports import export_delete
from gallery.services.library import album_delete


@admin.register(Album)
class AlbumAdmin(admin.ModelAdmin):
    list_display = ("title", "owner", "is_favourites", "created_at")
    list_select_related = ("owner",)
    raw_id_fields = ("cover",)  # members change through the API (album_items_add keeps their taken_at)
    readonly_fields = ("is_favourites",)
    search_fields = ("title", "owner__username")
    paginator = CheapCountPaginator
    show_full_result_count = False

    def has_delete_permission(self, request, obj=None) -> bool:
        return not (obj is not None and obj.is_favourites)

    def delete_model(self, request, obj):
        album_delete(album=obj)

    def delete_queryset(self, request, queryset):
        for album in queryset.filter(is_favourites=False):
            album_delete(album=album)


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ("name", "owner")
    list_select_related = ("owner",)
    search_fields = ("name", "owner__username")
    paginator = CheapCountPaginator
    show_full_result_count = False


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "prefix", "scopes", "created_at", "last_used_at", "revoked_at")
    list_select_related = ("user",)
    readonly_fields = ("prefix", "hashed_secret", "created_at", "last_used_at")
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False  # keys are made by `manage.py apikey create`, which shows the secret once

    @admin.action(description="Revoke")
    def revoke(self, request, queryset):
        for key in queryset:
            apikey_revoke(key=key)


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ("id", "owner", "state", "media_count", "size_display", "created_at", "finished_at")
    list_select_related = ("owner",)
    list_filter = ("state",)
    readonly_fields = [f.name for f in Export._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False  # users ask for exports (POST /api/v1/export/); operators run `manage.py export`

    @admin.display(description="size", ordering="size")
    def size_display(self, export: Export) -> str:
        return filesizeformat(export.size)

    def delete_model(self, request, obj):
        export_delete(export=obj)

    def delete_queryset(self, request, queryset):
        for export in queryset:
            export_delete(export=export)
