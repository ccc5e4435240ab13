"""/api/v1/timeline/buckets/: how many visible media per month or day of capture.

Local time of capture: taken_at at its recorded offset, else in the owner's time zone when
it was written (gallery.models.capture_day). Counts come from the day counters
(gallery.models_timeline.TimelineDay): one read of at most a row per day, whatever the
library's size. The items of a bucket: GET /api/v1/media/?bucket=2024-05 (or 2024-05-17).
"""

from __future__ import annotations

from django.db.models import Sum
from django.db.models.functions import TruncMonth
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.response import Response

from gallery.models import TimelineDay
from media_api.serializers import BucketQuerySerializer


@extend_schema(summary="How many media per month or day of capture, newest first", parameters=[BucketQuerySerializer],
               responses=inline_serializer("TimelineBuckets", {"buckets": inline_serializer(
                   "TimelineBucket", {"bucket": serializers.CharField(help_text="2024-05 or 2024-05-17"),
                                      "count": serializers.IntegerField()}, many=True)}))
@api_view(["GET"])
def buckets(request):
    query = BucketQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    days = TimelineDay.objects.filter(owner=request.user, count__gt=0)
    if query.validated_data["size"] == "day":
        rows = days.order_by("-day").values_list("day", "count")
        return Response({"buckets": [{"bucket": day.isoformat(), "count": n} for day, n in rows]})
    # Months summed by the database: a tenth of the day rows cross into Python.
    months = (days.annotate(month=TruncMonth("day")).values("month").annotate(n=Sum("count"))
              .order_by("-month").values_list("month", "n"))
    return Response({"buckets": [{"bucket": f"{month.year:04d}-{month.month:02d}", "count": n}
                                 for month, n in months]})
