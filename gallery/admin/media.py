"""The media list and page: thumbnails (through a staff-only view), filters, search, actions."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Q, Sum
from django.http import Http404, StreamingHttpResponse
from django.template.defaultfilters import filesizeformat
from django.urls import path, reverse
from django.utils.html import format_html

from gallery.admin.paging import CheapCountPaginator, DateProbes
from gallery.delivery.sources import FileSource, S3Source
from gallery.models import KindUsage, Media, MediaQuerySet, User, Variant
from gallery.services.media import media_delete, media_queue_processing
from gallery.services.trash import media_trash
from gallery.storage import is_s3, media_storage

THUMBNAIL_LEVELS = ("2s", "2")  # 40 px: small enough for a list of a hundred rows
THUMBNAILED = (Media.Kind.IMAGE, Media.Kind.VIDEO, Media.Kind.AUDIO)
# The list's filters whose count the KindUsage counters answer exactly (see known_count).
COUNTED_FILTERS = {"owner__id__exact", "kind__exact", "in_vault__exact", "trashed"}
PAGE_PARAMS = {"o", "p", "all", "e", "_changelist_filters", "_to_field", "_popup"}


class TrashedFilter(admin.SimpleListFilter):
    title = "trash"
    parameter_name = "trashed"

    def lookups(self, request, model_admin):
        return (("yes", "in the trash"), ("no", "not in the trash"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(trashed_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(trashed_at__isnull=True)
        return queryset


def known_count(params: dict[str, str]) -> int | None:
    """The number of media the list shows, from the counters, when only counted filters apply."""
    filters = {k: v for k, v in params.items() if k not in PAGE_PARAMS}
    if not set(filters) <= COUNTED_FILTERS:
        return None
    rows = KindUsage.objects.all()
    places = set(KindUsage.Place.values)
    if "owner__id__exact" in filters:
        rows = rows.filter(owner_id=filters["owner__id__exact"])
    if "kind__exact" in filters:
        rows = rows.filter(kind=filters["kind__exact"])
    if "in_vault__exact" in filters:
        vault = filters["in_vault__exact"] in ("1", "True", "true")
        places &= {KindUsage.Place.VAULT} if vault else {KindUsage.Place.LIBRARY, KindUsage.Place.TRASH}
    if "trashed" in filters:
        # A trashed vault item stays counted in the vault: only the library/trash split is exact.
        if "in_vault__exact" not in filters or filters["in_vault__exact"] in ("1", "True", "true"):
            return None
        places &= {KindUsage.Place.TRASH} if filters["trashed"] == "yes" else {KindUsage.Place.LIBRARY}
    try:
        return rows.filter(place__in=places).aggregate(n=Sum("count"))["n"] or 0
    except (ValueError, TypeError):  # a malformed id: let the changelist report it
        return None


class AdminMediaQuerySet(DateProbes, MediaQuerySet):
    probe_fields = ("taken_at",)


class VariantInline(admin.TabularInline):
    model = Variant
    extra = 0
    can_delete = False
    fields = readonly_fields = ("level", "width", "height", "size", "content_type", "storage_key", "created_at")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Media)
class MediaAdmin(admin.ModelAdmin):
    list_display = ("thumbnail", "original_filename", "owner", "kind", "status", "size_display", "taken_at",
                    "place_display")
    list_display_links = ("original_filename",)
    list_select_related = ("owner",)
    list_filter = ("owner", "kind", "status", "in_vault", TrashedFilter)
    date_hierarchy = "taken_at"
    search_fields = ("original_filename", "=sha256", "owner__username")  # see get_search_results
    ordering = ("-taken_at", "-id")
    show_full_result_count = False
    paginator = CheapCountPaginator
    inlines = [VariantInline]
    actions = ["reprocess", "trash"]
    fieldsets = (
        (None, {"fields": ("thumbnail_large", "original_filename", "owner", "kind", "status", "error", "content_type",
                           "size", "sha256", "original_key", "token")}),
        ("Capture", {"fields": ("taken_at", "taken_at_offset_minutes", "taken_at_estimated", "width", "height",
                                "duration", "latitude", "longitude", "altitude", "place_display", "camera_make",
                                "camera_model")}),
        ("Where it is", {"fields": ("trashed_at", "in_vault", "created_at", "updated_at")}),
        ("EXIF and details", {"fields": ("exif_pretty", "details_pretty")}),
    )

    def get_readonly_fields(self, request, obj=None):
        # Everything: media change through uploads, processing and the services.
        return [f.name for f in Media._meta.fields] + ["thumbnail_large", "place_display", "exif_pretty",
                                                       "details_pretty"]

    def has_add_permission(self, request) -> bool:
        return False  # media come from uploads, which check quotas and store bytes

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        return AdminMediaQuerySet(model=Media, query=qs.query.chain(), using=qs.db)

    def get_search_results(self, request, queryset, search_term):
        """Name (contains), SHA-256 (exact) or owner (user name, exact or contained): the owners
        are looked up first, so the media table is scanned once, without a join. A search hides
        the date hierarchy (its ends and periods would scan the table three times more)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        owners = User.objects.filter(username__icontains=term).values_list("pk", flat=True)
        found = queryset.filter(Q(original_filename__icontains=term) | Q(sha256=term.lower())
                                | Q(owner_id__in=list(owners[:1000])))
        found.query.skip_date_probes = True  # kept by every clone of the query
        return found, False

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        return CheapCountPaginator(queryset, per_page, orphans, allow_empty_first_page,
                                   known_count=known_count(request.GET.dict()))

    def get_urls(self):
        thumbnail = path("<uuid:media_id>/thumbnail/", self.admin_site.admin_view(self.thumbnail_view),
                         name="gallery_media_thumbnail")
        return [thumbnail, *super().get_urls()]

    # --- Columns -----------------------------------------------------------------------
    @admin.display(description="")
    def thumbnail(self, media: Media) -> str:
        # The URL only: the image is looked up when the browser asks for it, so the list makes
        # no query per row for it.
        if media.kind not in THUMBNAILED or media.in_vault or media.status != Media.Status.READY:
            return ""
        url = reverse("admin:gallery_media_thumbnail", args=[media.pk])
        return format_html('<img src="{}" width="40" height="40" loading="lazy" alt="" '
                           'style="object-fit:cover;border-radius:3px">', url)

    @admin.display(description="thumbnail")
    def thumbnail_large(self, media: Media) -> str:
        if media.kind not in THUMBNAILED or media.in_vault:
            return "—"
        url = reverse("admin:gallery_media_thumbnail", args=[media.pk])
        return format_html('<img src="{}?level=4" style="max-width:320px;max-height:320px" alt="">', url)

    @admin.display(description="size", ordering="size")
    def size_display(self, media: Media) -> str:
        return filesizeformat(media.size)

    @admin.display(description="place")
    def place_display(self, media: Media) -> str:
        return media.place

    @admin.display(description="EXIF")
    def exif_pretty(self, media: Media) -> str:
        return format_html("<pre style='max-height:30em;overflow:auto'>{}</pre>",
                           json.dumps(media.exif, indent=1, sort_keys=True, ensure_ascii=False, default=str))

    @admin.display(description="details")
    def details_pretty(self, media: Media) -> str:
        return format_html("<pre>{}</pre>", json.dumps(media.details, indent=1, sort_keys=True, ensure_ascii=False,
                                                       default=str))

    # --- The thumbnail view --------------------------------------------------------------
    def thumbnail_view(self, request, media_id):
        """A small variant of any library media, for staff who may view media here. /m/ shows
        each user their own media only; this is the admin's own door, behind admin_view (an
        active staff account) and the view permission. Vault items are never shown."""
        if not self.has_view_permission(request):
            raise Http404("no such media")
        levels = ("4", "4s") if request.GET.get("level") == "4" else THUMBNAIL_LEVELS
        found = {v.level: v for v in Variant.objects.filter(media_id=media_id, media__in_vault=False,
                                                            level__in=levels)}
        variant = next((found[level] for level in levels if level in found), None)
        if variant is None:
            raise Http404("no thumbnail")
        storage = media_storage()
        source = (S3Source(storage, variant.storage_key, variant.size) if is_s3(storage)
                  else FileSource(storage, variant.storage_key))

        def chunks():
            with source:
                yield from source.read(0, variant.size - 1)

        response = StreamingHttpResponse(chunks(), content_type=variant.content_type)
        response["Content-Length"] = str(variant.size)
        response["Cache-Control"] = "private, max-age=3600"
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "sandbox; default-src 'none'"
        return response

    # --- Writes go through the services ------------------------------------------------------
    def delete_model(self, request, obj):
        media_delete(media=obj)

    def delete_queryset(self, request, queryset):
        for media in queryset:
            media_delete(media=media)

    @admin.action(description="Process again (makes what is missing)")
    def reprocess(self, request, queryset):
        count = 0
        for media in queryset.exclude(status=Media.Status.UPLOADING).iterator():
            with transaction.atomic():
                media_queue_processing(media=media)
            count += 1
        messages.info(request, f"queued {count} media for processing")

    @admin.action(description="Move to the trash")
    def trash(self, request, queryset):
        moved = sum(1 for media in queryset.filter(trashed_at__isnull=True).iterator() if media_trash(media=media))
        messages.info(request, f"moved {moved} media to the trash")
