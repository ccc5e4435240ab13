"""One output serializer per resource; small input serializers for writes."""

from __future__ import annotations

import functools

from django.urls import reverse
from rest_framework import serializers

from gallery.models import Media, Share, Upload
from gallery.processing.filetypes import clean_media_type
from gallery.sharing import share_file_url, share_files

# What the JSON shows of a variant; views load only these.
VARIANT_FIELDS = ("id", "media_id", "level", "width", "height", "size", "content_type")


@functools.lru_cache(maxsize=1)
def _media_file_pattern() -> str:
    # reverse() costs ~50 µs and a page of a hundred media has ~1,100 URLs: resolve once.
    return reverse("media-file", kwargs={"token": "TOKEN", "level": "lvl"}).replace(
        "/TOKEN/", "/{token}/").replace("/lvl/", "/{level}/")


def media_file_url(media: Media, level: str) -> str:
    return _media_file_pattern().format(token=media.token, level=level)


class MediaSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="original_filename")
    taken_at = serializers.SerializerMethodField()
    place = serializers.SerializerMethodField()
    camera = serializers.CharField(read_only=True)
    variants = serializers.SerializerMethodField()
    original_url = serializers.SerializerMethodField()

    class Meta:
        model = Media
        fields = [
            "id", "kind", "status", "error", "name", "content_type", "size", "sha256", "taken_at",
            "taken_at_estimated", "width", "height", "duration", "latitude", "longitude", "altitude",
            "place", "camera", "variants", "original_url", "created_at", "trashed_at",
        ]
        read_only_fields = fields

    def get_taken_at(self, media: Media) -> str:
        return media.taken_at_local().isoformat()

    def get_place(self, media: Media) -> dict[str, str] | None:
        if not media.place:
            return None
        return {"city": media.place_city, "region": media.place_region, "country": media.place_country,
                "name": media.place}

    def get_variants(self, media: Media) -> dict[str, dict]:
        # `variants` is prefetched by the views; .all() reads the prefetch cache.
        return {
            v.level: {"url": media_file_url(media, v.level), "width": v.width, "height": v.height,
                      "size": v.size, "content_type": v.content_type}
            for v in media.variants.all()
        }

    def get_original_url(self, media: Media) -> str:
        return media_file_url(media, "0")


class MediaUploadSerializer(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=True)
    vault = serializers.BooleanField(required=False, default=False)


class MediaListQuerySerializer(serializers.Serializer):
    sha256 = serializers.RegexField(r"^[0-9a-fA-F]{64}$", required=False)
    kind = serializers.ChoiceField(choices=Media.Kind.choices, required=False)


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
