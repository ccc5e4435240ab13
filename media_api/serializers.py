"""One output serializer per resource; small input serializers for writes."""

from __future__ import annotations

import functools
import re
from datetime import date, datetime
from datetime import timezone as dt_timezone

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework import ISO_8601, serializers
from rest_framework.settings import api_settings
from rest_framework.utils.serializer_helpers import ReturnList

from gallery.models import Album, Media, Share, Upload
from gallery.processing.filetypes import clean_media_type
from gallery.sharing import share_file_url, share_files

# What the JSON shows of a variant; views load only these.
VARIANT_FIELDS = ("id", "media_id", "level", "width", "height", "size", "content_type")


@functools.lru_cache(maxsize=1)
def _media_file_parts() -> tuple[str, str, str]:
    """(head, middle, tail) of a file URL: head + token + middle + level + tail. reverse()
    costs ~50 µs and a page of a hundred media has ~1,100 URLs: resolved once."""
    pattern = reverse("media-file", kwargs={"token": "TOKEN", "level": "lvl"}).replace(
        "/TOKEN/", "/{token}/").replace("/lvl/", "/{level}/")
    head, rest = pattern.split("{token}")
    middle, tail = rest.split("{level}")
    return head, middle, tail


def media_file_url(media: Media, level: str) -> str:
    head, middle, tail = _media_file_parts()
    return f"{head}{media.token}{middle}{level}{tail}"


class MediaListSerializer(serializers.ListSerializer):
    """MediaSerializer(page, many=True). DRF binds the child to its list serializer and each
    refers to the other, so the page they hold (its rows, ~2,000 objects with their relations)
    lived until a garbage collection walked it. Once the JSON is written the child lets go, and
    the page is freed by reference counting when the response is (PageResponse)."""

    @property
    def data(self) -> ReturnList:
        data = ReturnList(self.to_representation(self.instance), serializer=self)
        self.child.parent = None
        return data


class MediaSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="original_filename")
    taken_at = serializers.SerializerMethodField()
    place = serializers.SerializerMethodField()
    camera = serializers.CharField(read_only=True)
    variants = serializers.SerializerMethodField()
    original_url = serializers.SerializerMethodField()
    favourite = serializers.SerializerMethodField()
    albums = serializers.SerializerMethodField()
    tags = serializers.SerializerMethodField()

    class Meta:
        model = Media
        fields = [
            "id", "kind", "status", "error", "name", "description", "content_type", "size", "sha256", "taken_at",
            "taken_at_estimated", "taken_at_manual", "width", "height", "duration", "latitude", "longitude",
            "altitude", "location_manual", "place", "camera", "variants", "original_url", "favourite", "albums",
            "tags", "created_at", "updated_at", "trashed_at",
        ]
        read_only_fields = fields
        list_serializer_class = MediaListSerializer

    def to_representation(self, media: Media) -> dict:
        """The same JSON as the generic ModelSerializer path (a test compares them, keys in
        Meta.fields' order), built directly: a page of a hundred spends most of its CPU in the
        generic per-field calls. Plain fields are the model's attributes as they are."""
        head, middle, tail = _media_file_parts()
        files = f"{head}{media.token}{middle}"
        albums = _related(media, "album_list", "albums")
        date = self._date_text
        created_at, updated_at, trashed_at = media.created_at, media.updated_at, media.trashed_at
        return {
            "id": str(media.pk), "kind": media.kind, "status": media.status, "error": media.error,
            "name": media.original_filename, "description": media.description, "content_type": media.content_type,
            "size": media.size, "sha256": media.sha256, "taken_at": media.taken_at_local().isoformat(),
            "taken_at_estimated": media.taken_at_estimated, "taken_at_manual": media.taken_at_manual,
            "width": media.width, "height": media.height, "duration": media.duration, "latitude": media.latitude,
            "longitude": media.longitude, "altitude": media.altitude, "location_manual": media.location_manual,
            "place": self.get_place(media), "camera": media.camera,
            "variants": {level: {"url": f"{files}{level}{tail}", "width": width, "height": height, "size": size,
                                 "content_type": content_type}
                         for _, level, width, height, size, content_type in _variant_rows(media)},
            "original_url": f"{files}0{tail}",
            "favourite": any(album.is_favourites for album in albums),
            "albums": sorted(album.pk for album in albums),
            "tags": self.get_tags(media),
            "created_at": None if created_at is None else date(created_at),
            "updated_at": None if updated_at is None else date(updated_at),
            "trashed_at": None if trashed_at is None else date(trashed_at),
        }

    @functools.cached_property
    def _date_text(self):
        """What DRF's DateTimeField writes of an aware datetime (ISO 8601 in the current time
        zone, "Z" for UTC), with the zone looked up once, not per value (a context-local read,
        ~10 µs): the serializer lives for one answer. DRF's field itself (~3 µs a value) when
        its output is set to anything else."""
        field = serializers.DateTimeField(default_timezone=timezone.get_current_timezone() if settings.USE_TZ else None)
        zone = getattr(field, "timezone", None)
        if zone is None or getattr(field, "format", api_settings.DATETIME_FORMAT) != ISO_8601:
            return field.to_representation

        utc = zone is dt_timezone.utc or getattr(zone, "key", None) in ("UTC", "Etc/UTC")

        def text(value: datetime) -> str:
            if value.tzinfo is None:
                return field.to_representation(value)
            if utc and value.tzinfo is dt_timezone.utc:  # the rows' own zone: nothing to convert
                written = value.isoformat()
                return written[:-6] + "Z" if written.endswith("+00:00") else written
            try:
                written = value.astimezone(zone).isoformat()
            except OverflowError:  # DRF's own error
                return field.to_representation(value)
            return written[:-6] + "Z" if written.endswith("+00:00") else written

        return text

    def generic_representation(self, media: Media) -> dict:
        return super().to_representation(media)

    # Variants, albums and tags are loaded into lists by the views (media_api.views.media.
    # attach_relations); a media loaded some other way reads them through its managers.
    def get_favourite(self, media: Media) -> bool:
        return any(album.is_favourites for album in _related(media, "album_list", "albums"))

    def get_albums(self, media: Media) -> list[int]:
        return sorted(album.pk for album in _related(media, "album_list", "albums"))

    def get_tags(self, media: Media) -> list[str]:
        return sorted((tag.name for tag in _related(media, "tag_list", "tags")), key=str.casefold)

    def get_taken_at(self, media: Media) -> str:
        return media.taken_at_local().isoformat()

    def get_place(self, media: Media) -> dict[str, str] | None:
        place = media.place
        if not place:
            return None
        return {"city": media.place_city, "region": media.place_region, "country": media.place_country,
                "name": place}

    def get_variants(self, media: Media) -> dict[str, dict]:
        return {
            level: {"url": media_file_url(media, level), "width": width, "height": height, "size": size,
                    "content_type": content_type}
            for _, level, width, height, size, content_type in _variant_rows(media)
        }

    def get_original_url(self, media: Media) -> str:
        return media_file_url(media, "0")


def _related(media: Media, prefetched: str, relation: str) -> list:
    found = getattr(media, prefetched, None)
    return found if found is not None else list(getattr(media, relation).all())


def _variant_rows(media: Media) -> list[tuple]:
    """(media id, level, width, height, size, content type) of each variant: attach_relations'
    tuples, or the variants' own values for a media loaded some other way."""
    found = getattr(media, "variant_list", None)
    if found is not None:
        return found
    return [(v.media_id, v.level, v.width, v.height, v.size, v.content_type) for v in media.variants.all()]


class MediaUploadSerializer(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=True)
    vault = serializers.BooleanField(required=False, default=False)


class MediaListQuerySerializer(serializers.Serializer):
    sha256 = serializers.RegexField(r"^[0-9a-fA-F]{64}$", required=False)
    kind = serializers.ChoiceField(choices=Media.Kind.choices, required=False)
    bucket = serializers.CharField(required=False, max_length=10)

    def validate_bucket(self, value: str) -> tuple[str, date]:
        """("month" | "day", its first day) from "2024-05" or "2024-05-17"."""
        try:
            if BUCKET_MONTH.fullmatch(value):
                return "month", date(int(value[:4]), int(value[5:7]), 1)
            if BUCKET_DAY.fullmatch(value):
                return "day", date.fromisoformat(value)
        except ValueError:
            pass
        raise serializers.ValidationError("a month (2024-05) or a day (2024-05-17)")


BUCKET_MONTH = re.compile(r"[0-9]{4}-[0-9]{2}")
BUCKET_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class BucketQuerySerializer(serializers.Serializer):
    size = serializers.ChoiceField(choices=["month", "day"], default="month")


class MediaEditSerializer(serializers.Serializer):
    """PATCH /api/v1/media/<id>/: every field optional; latitude and longitude go together."""

    name = serializers.CharField(max_length=255, required=False)
    description = serializers.CharField(max_length=10_000, required=False, allow_blank=True, trim_whitespace=False)
    taken_at = serializers.CharField(max_length=64, required=False)
    latitude = serializers.FloatField(required=False, allow_null=True, min_value=-90, max_value=90)
    longitude = serializers.FloatField(required=False, allow_null=True, min_value=-180, max_value=180)

    def validate_taken_at(self, value: str) -> datetime:
        try:
            parsed = parse_datetime(value)
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise serializers.ValidationError("an ISO 8601 date and time with its UTC offset (2024-05-17T14:03:00+02:00)")
        return parsed

    def validate(self, data: dict) -> dict:
        if ("latitude" in data) != ("longitude" in data):
            raise serializers.ValidationError({"latitude": "latitude and longitude go together"})
        if "latitude" in data and (data["latitude"] is None) != (data["longitude"] is None):
            raise serializers.ValidationError({"latitude": "both numbers, or both null to forget the position"})
        unknown = sorted(set(self.initial_data) - set(self.fields)) if hasattr(self.initial_data, "keys") else []
        if unknown:
            raise serializers.ValidationError({name: "not a field that can be changed" for name in unknown})
        if not data:
            raise serializers.ValidationError("nothing to change")
        return data


MAX_IDS = 1000


def MediaIds(**kwargs) -> serializers.ListField:  # noqa: N802 (used like a field class)
    return serializers.ListField(child=serializers.UUIDField(), max_length=MAX_IDS, **kwargs)


def TagNames() -> serializers.ListField:  # noqa: N802
    return serializers.ListField(child=serializers.CharField(max_length=200, allow_blank=True), max_length=100,
                                 required=False, default=list)


class MediaIdsChangeSerializer(serializers.Serializer):
    add = MediaIds(required=False, default=list)
    remove = MediaIds(required=False, default=list)

    def validate(self, data: dict) -> dict:
        if len(data["add"]) + len(data["remove"]) > MAX_IDS:
            raise serializers.ValidationError(f"at most {MAX_IDS} ids in add and remove together")
        return data


class MediaIdsSerializer(serializers.Serializer):
    media = MediaIds(allow_empty=False)


class TagsBulkSerializer(serializers.Serializer):
    media = MediaIds(allow_empty=False)
    add = TagNames()
    remove = TagNames()


class AlbumCreateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200)


class AlbumUpdateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200, required=False)
    cover = serializers.UUIDField(required=False, allow_null=True)


class AlbumSerializer(serializers.ModelSerializer):
    """An album; the views annotate `count` and `cover_media` (the chosen cover if it is still
    a visible member, else the newest visible member)."""

    favourites = serializers.BooleanField(source="is_favourites")
    count = serializers.IntegerField()
    cover = serializers.SerializerMethodField()

    class Meta:
        model = Album
        fields = ["id", "title", "favourites", "count", "cover", "created_at"]
        read_only_fields = fields

    def get_cover(self, album: Album) -> dict | None:
        media = getattr(album, "cover_media", None)
        if media is None:
            return None
        variant = media.grid_variant
        return {"id": str(media.pk), "chosen": album.cover_id == media.pk,
                "url": media_file_url(media, variant.level) if variant else None}


SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"


class MediaExistsSerializer(serializers.Serializer):
    sha256 = serializers.ListField(child=serializers.RegexField(SHA256_PATTERN), max_length=1000, allow_empty=True)


class DirectUploadCreateSerializer(serializers.Serializer):
    filename = serializers.CharField(max_length=255)
    size = serializers.IntegerField(min_value=1)
    content_type = serializers.CharField(max_length=127, required=False, allow_blank=True, default="")
    sha256 = serializers.RegexField(SHA256_PATTERN)
    album = serializers.IntegerField(required=False, allow_null=True, default=None)

    def validate_content_type(self, value: str) -> str:
        # A hint only (the bytes decide the media's type), sent on to S3 as a header: a bare
        # type/subtype or nothing, never a list, a line break or non-ASCII text.
        return clean_media_type(value)


class DirectUploadPartSerializer(serializers.Serializer):
    number = serializers.IntegerField(min_value=1, max_value=10_000)
    etag = serializers.CharField(max_length=256)


class DirectUploadCompleteSerializer(serializers.Serializer):
    parts = DirectUploadPartSerializer(many=True, allow_empty=False)


class DirectUploadSerializer(serializers.ModelSerializer):
    size = serializers.IntegerField(source="length")
    media_id = serializers.UUIDField(allow_null=True)

    class Meta:
        model = Upload
        fields = ["id", "state", "size", "part_size", "filename", "sha256", "expires_at", "media_id"]
        read_only_fields = fields


# --- Share links (media_api.views.shares) ---------------------------------------------------
class ShareSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    has_password = serializers.BooleanField(read_only=True)

    class Meta:
        model = Share
        fields = ["id", "token", "url", "media", "album", "has_password", "expires_at", "allow_download",
                  "show_metadata", "revoked_at", "created_at"]
        read_only_fields = fields

    def get_url(self, share: Share) -> str:
        return reverse("gallery:share", kwargs={"token": share.token})

    media = serializers.UUIDField(source="media_id", allow_null=True, read_only=True)
    album = serializers.IntegerField(source="album_id", allow_null=True, read_only=True)


class ShareCreateSerializer(serializers.Serializer):
    media = serializers.UUIDField(required=False, allow_null=True, default=None)
    album = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1,
                                     max_value=2**63 - 1)
    password = serializers.CharField(required=False, allow_blank=True, default="", max_length=1024,
                                     trim_whitespace=False)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    allow_download = serializers.BooleanField(required=False, default=False)
    show_metadata = serializers.BooleanField(required=False, default=False)

    def validate(self, data: dict) -> dict:
        if (data["media"] is None) == (data["album"] is None):
            raise serializers.ValidationError("give exactly one of media and album")
        return data


class ShareUnlockSerializer(serializers.Serializer):
    password = serializers.CharField(max_length=1024, allow_blank=True, trim_whitespace=False)


class SharedVariantSerializer(serializers.Serializer):
    url = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    size = serializers.IntegerField()
    content_type = serializers.CharField()


class SharedPlaceSerializer(serializers.Serializer):
    city = serializers.CharField()
    region = serializers.CharField()
    country = serializers.CharField()
    name = serializers.CharField()


class SharedMediaSerializer(serializers.Serializer):
    """A media as a share link shows it: no owner, no checksum; position, place and camera
    only when the owner chose show_metadata; only the files the share sends (context "share").
    The fields describe the output (OpenAPI); to_representation writes it."""

    id = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=Media.Kind.choices)
    status = serializers.ChoiceField(choices=Media.Status.choices)
    name = serializers.CharField()
    content_type = serializers.CharField()
    size = serializers.IntegerField()
    taken_at = serializers.DateTimeField(help_text="local time of capture, with its offset")
    width = serializers.IntegerField(allow_null=True)
    height = serializers.IntegerField(allow_null=True)
    duration = serializers.FloatField(allow_null=True)
    latitude = serializers.FloatField(allow_null=True, help_text="null unless the share shows metadata")
    longitude = serializers.FloatField(allow_null=True)
    altitude = serializers.FloatField(allow_null=True)
    place = SharedPlaceSerializer(allow_null=True)
    camera = serializers.CharField(allow_blank=True)
    variants = serializers.DictField(child=SharedVariantSerializer(), help_text="by level; URLs for this share only")
    original_url = serializers.CharField(allow_null=True, help_text="null without allow_download")

    def to_representation(self, media: Media) -> dict:
        share = self.context["share"]
        files = share_files(share, media)
        meta = share.show_metadata
        return {
            "id": str(media.pk), "kind": media.kind, "status": media.status, "name": media.original_filename,
            "content_type": media.content_type, "size": media.size,
            "taken_at": media.taken_at_local().isoformat(), "width": media.width, "height": media.height,
            "duration": media.duration,
            "latitude": media.latitude if meta else None, "longitude": media.longitude if meta else None,
            "altitude": media.altitude if meta else None,
            "place": ({"city": media.place_city, "region": media.place_region, "country": media.place_country,
                       "name": media.place} if meta and media.place else None),
            "camera": media.camera if meta else "",
            "variants": {level: {"url": share_file_url(share, media, level), "width": v.width, "height": v.height,
                                 "size": v.size, "content_type": v.content_type}
                         for level, v in files["variants"].items()},
            "original_url": files["original"],
        }
