"""Job handlers: each takes ids, loads, and calls a service. Safe to run twice."""

from __future__ import annotations

from typing import Any

from gallery import processing
from gallery.jobs import job


def _processing_failed(payload: dict[str, Any], error: str) -> None:
    processing.media_mark_failed(media_id=payload["media_id"], error=f"processing failed: {error}")


@job("process_media", on_failure=_processing_failed)
def process_media(*, media_id: str) -> None:
    processing.media_process(media_id=media_id)
