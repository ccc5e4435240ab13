"""Loaded as a pytest plugin (-p tests.environment) before pytest-django reads settings.

It points the settings at a throw-away data dir and runs jobs inline; anything the caller
set explicitly (DATABASE_URL, REDIS_URL in CI) wins.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("CHIPMUNK_DATA_DIR", tempfile.mkdtemp(prefix="chipmunk-test-"))
os.environ.setdefault("JOBS_MODE", "inline")
os.environ.setdefault("LOG_LEVEL", "warning")
os.environ.setdefault("JOB_RETRY_BASE_SECONDS", "0")
for _name in ("STORAGE_BACKEND", "SEARCH_BACKEND", "SECRET_KEY"):
    # A developer's shell may have production values; tests choose their own.
    os.environ.pop(_name, None)
