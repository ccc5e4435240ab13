from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.template.defaultfilters import filesizeformat

from gallery import jobs
from gallery.models import Album, ApiKey, Identity, Job, Media, Tag, Upload, User, Variant
from gallery.services.accounts import apikey_revoke
from gallery.services.library import album_delete, favourites_for
from gallery.services.media import media_delete, media_queue_processing


class PlanForm(forms.ModelForm):
    # A choice among QUOTA_PLANS as they are now (the setting can change without a migration).
    plan = forms.ChoiceField(choices=())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        plans = [(name, f"{name} ({filesizeformat(size)})") for name, size in settings.QUOTA_PLANS.items()]
        if self.instance.plan and self.instance.plan not in settings.QUOTA_PLANS:
            plans.append((self.instance.plan, f"{self.instance.plan} (no longer in QUOTA_PLANS)"))
        self.fields["plan"].choices = plans
        self.fields["plan"].initial = self.instance.plan or settings.DEFAULT_PLAN


class IdentityInline(admin.TabularInline):
    model = Identity
    extra = 0
    readonly_fields = ("issuer", "subject", "created_at", "last_login_at")

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # identities are linked by logging in through the provider


@admin.register(User)
class ChipmunkUserAdmin(UserAdmin):
    list_display = ("username", "email", "is_staff", "plan", "quota", "used", "reserved")
    list_filter = UserAdmin.list_filter + ("plan",)
    readonly_fields = ("used_bytes", "reserved_bytes")
    fieldsets = UserAdmin.fieldsets + (
        ("Storage", {"fields": ("plan", "personal_quota_bytes", "used_bytes", "reserved_bytes", "time_zone")}),
    )

    def get_inlines(self, request, obj):
        return [IdentityInline] if obj is not None else []

    def get_form(self, request, obj=None, **kwargs):
        if obj is not None:
            kwargs["form"] = type("UserPlanChangeForm", (PlanForm, self.form), {})
        return super().get_form(request, obj, **kwargs)

    @admin.display(description="quota")
    def quota(self, user: User) -> str:
        return filesizeformat(user.quota_bytes)

    @admin.display(description="used")
    def used(self, user: User) -> str:
        return filesizeformat(user.used_bytes)

    @admin.display(description="reserved")
    def reserved(self, user: User) -> str:
        return filesizeformat(user.reserved_bytes)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            favourites_for(user=obj)


class VariantInline(admin.TabularInline):
    model = Variant
    extra = 0
    can_delete = False
    readonly_fields = ("level", "width", "height", "size", "content_type", "storage_key")


@admin.register(Media)
class MediaAdmin(admin.ModelAdmin):
    list_display = ("original_filename", "owner", "kind", "status", "size", "taken_at", "created_at")
    list_filter = ("kind", "status", "in_vault")
    search_fields = ("original_filename", "sha256", "owner__username")
    readonly_fields = [f.name for f in Media._meta.fields]
    inlines = [VariantInline]
    actions = ["reprocess"]

    def has_add_permission(self, request) -> bool:
        return False  # media come from uploads, which check quotas and store bytes

    def delete_model(self, request, obj):
        media_delete(media=obj)

    def delete_queryset(self, request, queryset):
        for media in queryset:
            media_delete(media=media)

    @admin.action(description="Process again")
    def reprocess(self, request, queryset):
        for media in queryset:
            media_queue_processing(media=media)
        messages.info(request, f"queued {queryset.count()} media")


@admin.register(Album)
class AlbumAdmin(admin.ModelAdmin):
    list_display = ("title", "owner", "is_favourites", "created_at")
    raw_id_fields = ("cover", "media")
    readonly_fields = ("is_favourites",)

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


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "prefix", "scopes", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "hashed_secret", "created_at", "last_used_at")
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False  # keys are made by `manage.py apikey create`, which shows the secret once

    @admin.action(description="Revoke")
    def revoke(self, request, queryset):
        for key in queryset:
            apikey_revoke(key=key)


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "queue", "state", "attempts", "max_attempts", "run_after", "worker", "updated_at")
    list_filter = ("state", "queue", "name")
    readonly_fields = [f.name for f in Job._meta.fields]
    actions = ["retry"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Retry now")
    def retry(self, request, queryset):
        count = queryset.exclude(state=Job.State.RUNNING).update(
            state=Job.State.QUEUED, attempts=0, run_after=jobs.timezone.now(), lease_until=None)
        messages.info(request, f"queued {count} jobs again")


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = ("id", "owner", "kind", "state", "filename", "offset", "length", "expires_at", "updated_at")
    list_filter = ("kind", "state", "concat")
    search_fields = ("filename", "owner__username", "sha256")
    readonly_fields = [f.name for f in Upload._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Deleting a row would leak its reservation and its bytes; cleanup_uploads ends uploads.
        return False
