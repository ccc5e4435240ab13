"""One output serializer per resource; small input serializers for writes."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from django.urls import reverse
from rest_framework import serializers

from gallery.models import Media, Upload
from gallery.processing.filetypes import clean_media_type

# What the JSON shows of a variant; views load only these.
VARIANT_FIELDS = ("id", "media_id", "level", "width", "height", "size", "content_type")
# The same as plain values, for a page of the list (values_list: no model objects).
VARIANT_VALUES = ("media__token", "level", "width", "height", "size", "content_type")
# The media columns MediaSerializer's fields read, as values() names.
MEDIA_VALUES = (
    "id", "kind", "status", "error", "original_filename", "content_type", "size", "sha256", "taken_at",
    "taken_at_offset_minutes", "taken_at_estimated", "width", "height", "duration", "latitude", "longitude",
    "altitude", "place_city", "place_region", "place_country", "camera_make", "camera_model", "token",
    "created_at", "trashed_at", "owner__time_zone",
)


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

    def to_representation(self, media: Media) -> dict:
        if not values_supported():
            return super().to_representation(media)
        row = {name: getattr(media, name) for name in MEDIA_VALUES[:-1]}
        row["owner__time_zone"] = media.owner.time_zone
        return media_values_json(row, ((media.token, v.level, v.width, v.height, v.size, v.content_type)
                                       for v in media.variants.all()))


# --- The same JSON from plain values -----------------------------------------------------------
# A page of the list is a hundred media with ten variants each: through the fields above that
# is ~2,300 field calls and 1,100 model objects (~45 ms of CPU); from values, a few ms. The
# fields stay the declaration (and the fallback: a field added to Meta.fields without being
# taught here makes every media go through DRF again); tests/media_api compares both outputs.
_FIELDS_TAUGHT = (
    "id", "kind", "status", "error", "name", "content_type", "size", "sha256", "taken_at",
    "taken_at_estimated", "width", "height", "duration", "latitude", "longitude", "altitude",
    "place", "camera", "variants", "original_url", "created_at", "trashed_at",
)
_datetime = serializers.DateTimeField()


def values_supported() -> bool:
    """Whether MediaSerializer's fields are the ones media_values_json writes."""
    return tuple(MediaSerializer.Meta.fields) == _FIELDS_TAUGHT


class _Row(dict):
    """A values() row read as the model's attributes, for its pure properties (place, camera,
    taken_at_local): one definition of each, on the model."""

    __getattr__ = dict.__getitem__

    @property
    def owner(self) -> _Row:
        return _Row(time_zone=self["owner__time_zone"])


def media_values_json(row: dict, variants: Iterable[tuple]) -> dict:
    """MediaSerializer's JSON of one media from its MEDIA_VALUES and the VARIANT_VALUES of each
    variant (token, level, width, height, size, content_type)."""
    media = _Row(row)
    place = Media.place.fget(media)
    pattern = _media_file_pattern()
    token = row["token"]
    return {
        "id": str(row["id"]), "kind": row["kind"], "status": row["status"], "error": row["error"],
        "name": row["original_filename"], "content_type": row["content_type"], "size": int(row["size"]),
        "sha256": row["sha256"], "taken_at": Media.taken_at_local(media).isoformat(),
        "taken_at_estimated": bool(row["taken_at_estimated"]),
        "width": _int(row["width"]), "height": _int(row["height"]), "duration": _float(row["duration"]),
        "latitude": _float(row["latitude"]), "longitude": _float(row["longitude"]),
        "altitude": _float(row["altitude"]),
        "place": {"city": row["place_city"], "region": row["place_region"], "country": row["place_country"],
                  "name": place} if place else None,
        "camera": Media.camera.fget(media),
        "variants": {level: {"url": pattern.format(token=token, level=level), "width": width, "height": height,
                             "size": size, "content_type": content_type}
                     for _, level, width, height, size, content_type in variants},
        "original_url": pattern.format(token=token, level="0"),
        "created_at": _datetime.to_representation(row["created_at"]),
        "trashed_at": _datetime.to_representation(row["trashed_at"]),
    }


def _int(value) -> int | None:
    return None if value is None else int(value)


def _float(value) -> float | None:
    return None if value is None else float(value)


class MediaUploadSerializer(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=True)


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
