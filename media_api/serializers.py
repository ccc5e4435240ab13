"""One output serializer per resource; small input serializers for writes."""

from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from gallery.models import Media


def media_file_url(media: Media, level: str) -> str:
    return reverse("media-file", kwargs={"token": media.token, "level": level})


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


class MediaListQuerySerializer(serializers.Serializer):
    sha256 = serializers.RegexField(r"^[0-9a-fA-F]{64}$", required=False)
    kind = serializers.ChoiceField(choices=Media.Kind.choices, required=False)
