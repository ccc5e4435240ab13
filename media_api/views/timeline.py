"""/api/v1/timeline/buckets/: how many visible media per month or day of capture.

Local time of capture: taken_at at its recorded offset, else in the owner's time zone when
it was written (gallery.models.capture_day). Counts come from the day counters
(gallery.models_timeline.TimelineDay): one read of at most a row per day, whatever the
library's size. The items of a bucket: GET /api/v1/media/?bucket=2024-05 (or 2024-05-17).
"""

from __future__ import annotations

from rest_framework.decorators import api_view
from rest_framework.response import Response

from gallery.models import TimelineDay
from media_api.serializers import BucketQuerySerializer


@api_view(["GET"])
def buckets(request):
    query = BucketQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    days = (TimelineDay.objects.filter(owner=request.user, count__gt=0).order_by("-day")
            .values_list("day", "count"))
    by_month = query.validated_data["size"] == "month"
    found: dict[str, int] = {}
    for day, count in days:
        key = f"{day.year:04d}-{day.month:02d}" if by_month else day.isoformat()
        found[key] = found.get(key, 0) + count
    return Response({"buckets": [{"bucket": key, "count": n} for key, n in found.items()]})
