"""The database backend's index: one row per searchable media, with its facets in columns.

Every facet and filter is an indexed column (or a row of a side table for tags and albums)
led by the owner, so a filtered list and its facet counts are index range scans and
GROUP BYs over the matching rows, never a scan of the library. Words are matched by
PostgreSQL full-text search (a generated tsvector column with a GIN index, and a trigram
index on the file name) or by SQLite FTS5 tables kept in step by triggers; both are made
by migration 0001 with raw SQL for the database in use, outside the models.

SQLite note: Django remakes a table to alter it, which drops its triggers; a migration that
alters search_entry must create the FTS triggers again (see 0001's SQLITE_SQL).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class SearchEntry(models.Model):
    # An integer key: FTS5 rows are addressed by integer rowids.
    id = models.BigAutoField(primary_key=True)
    media = models.OneToOneField("gallery.Media", on_delete=models.CASCADE, related_name="+")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+",
                              db_index=False)
    kind = models.CharField(max_length=16)
    content_type = models.CharField(max_length=127)
    name = models.CharField(max_length=255)  # folded file name (trigram matches)
    words = models.TextField()               # what full-text search matches, space-separated
    taken_at = models.DateTimeField()
    taken_at_us = models.BigIntegerField()
    date = models.IntegerField()             # local yyyymmdd
    year = models.SmallIntegerField()
    month = models.SmallIntegerField()
    day = models.SmallIntegerField()
    weekday = models.SmallIntegerField()
    country = models.CharField(max_length=200)
    region = models.CharField(max_length=200)
    city = models.CharField(max_length=200)
    camera = models.CharField(max_length=200)
    favourite = models.BooleanField(default=False)
    # The tags and album ids again, as JSON lists: facet counts read them from the matching
    # rows (no lookup per row); filters use the indexed side tables below.
    tag_names = models.JSONField(default=list)
    album_ids = models.JSONField(default=list)
    latitude = models.FloatField(null=True)
    longitude = models.FloatField(null=True)
    indexed_at = models.DateTimeField()

    class Meta:
        indexes = [
            # PostgreSQL: the ids ride along (INCLUDE), so counts and pages of these filters are
            # index-only scans; SQLite ignores INCLUDE.
            models.Index(fields=["owner", "-taken_at_us", "-media"], name="search_owner_time", include=["id"]),
            models.Index(fields=["owner", "kind", "year", "-taken_at_us"], name="search_owner_kind_year",
                         include=["id", "media"]),
            models.Index(fields=["owner", "year", "month", "day"], name="search_owner_ymd", include=["id"]),
            models.Index(fields=["owner", "date"], name="search_owner_date"),
            models.Index(fields=["owner", "country", "city"], name="search_owner_place"),
            models.Index(fields=["owner", "city"], name="search_owner_city"),
            models.Index(fields=["owner", "camera"], name="search_owner_camera"),
            models.Index(fields=["owner", "favourite", "-taken_at_us"], name="search_owner_favourite"),
            models.Index(fields=["owner", "latitude", "longitude"], name="search_owner_geo"),
            models.Index(fields=["owner", "indexed_at"], name="search_owner_indexed"),
        ]

    def __str__(self) -> str:
        return f"search entry of {self.media_id}"


class SearchTag(models.Model):
    entry = models.ForeignKey(SearchEntry, on_delete=models.CASCADE, related_name="tags")
    owner_id = models.UUIDField()
    name = models.CharField(max_length=100)
    # The entry's kind and year again: "kind + year + tag" is one range of this index.
    kind = models.CharField(max_length=16)
    year = models.SmallIntegerField()

    class Meta:
        indexes = [
            models.Index(fields=["owner_id", "name", "kind", "year", "entry"], name="search_tag_owner_name"),
            models.Index(fields=["entry", "name"], name="search_tag_entry"),
        ]


class SearchAlbum(models.Model):
    entry = models.ForeignKey(SearchEntry, on_delete=models.CASCADE, related_name="albums")
    owner_id = models.UUIDField()
    album_id = models.BigIntegerField()

    class Meta:
        indexes = [
            models.Index(fields=["owner_id", "album_id", "entry"], name="search_album_owner_album"),
            models.Index(fields=["entry", "album_id"], name="search_album_entry"),
        ]
