"""Accounts: plan, quota and what is used, by kind; the login provider; deactivate, reset the quota."""

from __future__ import annotations

from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from gallery.models import Identity, Media, User
from gallery.services.accounts import user_deactivate, user_reset_quota
from gallery.services.library import favourites_for


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


def usage_bar(user: User) -> str:
    quota = user.quota_bytes
    share = min(1.0, user.used_bytes / quota) if quota else 1.0
    colour = "#ba2121" if share >= 0.95 else "#e0a000" if share >= 0.8 else "#417690"
    return format_html(
        '<div title="{} of {}" style="width:120px;height:10px;background:#ddd;border-radius:3px">'
        '<div style="width:{}%;height:10px;background:{};border-radius:3px"></div></div>'
        "<small>{} of {} ({}%)</small>",
        filesizeformat(user.used_bytes), filesizeformat(quota), round(share * 100, 1), colour,
        filesizeformat(user.used_bytes), filesizeformat(quota), round(share * 100))


@admin.register(User)
class ChipmunkUserAdmin(UserAdmin):
    list_display = ("username", "email", "is_active", "is_staff", "plan", "quota", "usage", "by_kind", "last_login",
                    "provider")
    list_filter = UserAdmin.list_filter + ("plan",)
    readonly_fields = ("used_bytes", "reserved_bytes", "usage", "by_kind", "last_login", "date_joined")
    fieldsets = UserAdmin.fieldsets + (
        ("Storage", {"fields": ("plan", "personal_quota_bytes", "usage", "by_kind", "used_bytes", "reserved_bytes",
                                "time_zone")}),
    )
    actions = ["deactivate", "reset_quota"]
    show_full_result_count = False

    def get_queryset(self, request):
        # Two queries for the whole page, whatever its size: the counters and the identities.
        return super().get_queryset(request).prefetch_related("kind_usage", "identities")

    def get_inlines(self, request, obj):
        return [IdentityInline] if obj is not None else []

    def get_form(self, request, obj=None, **kwargs):
        if obj is not None:
            kwargs["form"] = type("UserPlanChangeForm", (PlanForm, self.form), {})
        return super().get_form(request, obj, **kwargs)

    @admin.display(description="quota")
    def quota(self, user: User) -> str:
        own = " (personal)" if user.personal_quota_bytes is not None else ""
        return f"{filesizeformat(user.quota_bytes)}{own}"

    @admin.display(description="used", ordering="used_bytes")
    def usage(self, user: User) -> str:
        return usage_bar(user)

    @admin.display(description="bytes by kind")
    def by_kind(self, user: User) -> str:
        totals: dict[str, int] = {}
        for row in user.kind_usage.all():  # library, trash and vault: all count against the quota
            totals[row.kind] = totals.get(row.kind, 0) + row.bytes
        shown = [(kind, filesizeformat(totals[kind])) for kind in Media.Kind.values if totals.get(kind)]
        return format_html_join(mark_safe("<br>"), "{}: {}", shown) if shown else "—"

    @admin.display(description="login provider")
    def provider(self, user: User) -> str:
        hosts = sorted({urlsplit(i.issuer).netloc or i.issuer for i in user.identities.all()})
        return ", ".join(hosts) if hosts else "local"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            favourites_for(user=obj)

    @admin.action(description="Deactivate (no login, keys and tokens refused; nothing deleted)")
    def deactivate(self, request, queryset):
        users = [u for u in queryset if u.is_active and u.pk != request.user.pk]
        for user in users:
            user_deactivate(user=user)
        messages.info(request, f"deactivated {len(users)} account(s)")

    @admin.action(description="Reset the quota to the plan's")
    def reset_quota(self, request, queryset):
        users = [u for u in queryset if u.personal_quota_bytes is not None]
        for user in users:
            user_reset_quota(user=user)
        messages.info(request, f"{len(users)} account(s) follow their plan's quota again")
