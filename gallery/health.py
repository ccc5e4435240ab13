"""/health/: the state of each part the gallery needs, 200 when all answer, 503 otherwise.

Apps add their own parts with register() in AppConfig.ready() (search adds "search"), so
gallery does not import them.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from typing import Any, Callable

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

from gallery import jobs
from gallery.auth import bearer_token
from gallery.storage import is_s3, media_storage, s3_client

log = logging.getLogger(__name__)

Check = Callable[[], dict[str, Any]]
_CHECKS: dict[str, Check] = {}


def register(name: str, check: Check) -> None:
    _CHECKS[name] = check


def check_database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"vendor": connection.vendor}


def check_storage() -> dict[str, Any]:
    storage = media_storage()
    if is_s3(storage):
        s3_client(storage).head_bucket(Bucket=storage.bucket_name)
        return {"backend": "s3", "bucket": storage.bucket_name}
    location = storage.location
    os.makedirs(location, exist_ok=True)
    if not os.access(location, os.W_OK):
        raise OSError(f"{location} is not writable")
    return {"backend": "local"}


def check_task_queue() -> dict[str, Any]:
    return jobs.queue_stats()


def check_channel_layer() -> dict[str, Any]:
    if settings.REDIS_URL:
        import redis

        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=3, socket_connect_timeout=3).ping()
        return {"backend": "redis"}
    return {"backend": "in-memory"}


def check_blob_cache() -> dict[str, Any]:
    from gallery.delivery.blobcache import cache_stats

    return cache_stats()


register("database", check_database)
register("storage", check_storage)
register("task_queue", check_task_queue)
register("channel_layer", check_channel_layer)
register("blob_cache", check_blob_cache)


def run_checks() -> tuple[bool, dict[str, Any]]:
    report: dict[str, Any] = {}
    healthy = True
    for name, check in _CHECKS.items():
        started = time.monotonic()
        try:
            detail = check()
            report[name] = {"ok": True, **detail}
        except Exception as exc:  # any failure of a part is reported, not raised
            healthy = False
            report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        report[name]["ms"] = round((time.monotonic() - started) * 1000, 1)
    return healthy, report


def may_see_details(request) -> bool:
    """Staff sessions and holders of HEALTH_TOKEN see counts, sizes and errors; others only ok."""
    if getattr(request, "user", None) is not None and request.user.is_active and request.user.is_staff:
        return True
    token = settings.HEALTH_TOKEN
    if not token:
        return False
    offered = bearer_token(request) or request.GET.get("token", "")
    return hmac.compare_digest(offered.encode(), token.encode())


@never_cache
def health(request):
    healthy, report = run_checks()
    if not may_see_details(request):
        report = {name: {"ok": part["ok"]} for name, part in report.items()}
    return JsonResponse({"status": "ok" if healthy else "unavailable", "checks": report},
                        status=200 if healthy else 503)
