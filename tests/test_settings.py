"""Settings: invalid values stop start-up naming the variable; compose passes only known ones."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def start_with(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in env}
    return subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT,
                          env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name,value", [
    ("PORT", "eighty"), ("DEBUG", "maybe"), ("STORAGE_BACKEND", "floppy"), ("QUOTA_PLANS", "free:huge"),
    ("QUOTA_PLANS", "free:1GB,free:2GB"), ("DEFAULT_PLAN", "platinum"), ("LOCAL_LOGIN", "false"),
    ("OIDC_ISSUER_URL", "keycloak.example"), ("OIDC_ACCESS_TOKEN_JWT", "sometimes"),
    ("WORKER_CONCURRENCY", "0"), ("SEARCH_BACKEND", "grep"), ("JOB_LEASE_SECONDS", "1"),
    ("DATABASE_POOL", "true"),  # on SQLite
    ("FORWARDED_ALLOW_IPS", "nginx"), ("MAX_REQUEST_HEADER_SIZE", "big"), ("LOGIN_FAILURES_PER_ACCOUNT", "0"),
    ("MAP_TILE_URL", "tiles.example/{z}/{x}/{y}.png"), ("MAP_TILE_URL", "https://tiles.example/world.png"),
    ("MAP_TILE_URL", "https://tiles.example/{z}/{x}/{y}.png; script-src *"),
])
def test_invalid_setting_names_the_variable(name, value, tmp_path):
    # DATABASE_URL empty: SQLite, whatever the caller (CI) points the tests at.
    result = start_with({name: value, "CHIPMUNK_DATA_DIR": str(tmp_path), "DATABASE_URL": ""})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and name in result.stderr


def test_a_provider_needs_its_client(tmp_path):
    result = start_with({"OIDC_ISSUER_URL": "https://id.example.org/realms/x", "OIDC_CLIENT_ID": "",
                         "CHIPMUNK_DATA_DIR": str(tmp_path), "DATABASE_URL": ""})
    assert result.returncode != 0 and "OIDC_CLIENT_ID" in result.stderr


def test_start_up_does_not_wait_for_the_provider(tmp_path):
    # Discovery happens on first use: a provider that is down must not stop the gallery.
    result = start_with({"OIDC_ISSUER_URL": "http://127.0.0.1:9/realms/x", "OIDC_CLIENT_ID": "c",
                         "OIDC_CLIENT_SECRET": "s", "LOCAL_LOGIN": "false",
                         "CHIPMUNK_DATA_DIR": str(tmp_path), "DATABASE_URL": ""})
    assert result.returncode == 0, result.stderr


def test_s3_needs_its_keys(tmp_path):
    result = start_with({"STORAGE_BACKEND": "s3", "S3_ACCESS_KEY_ID": "", "CHIPMUNK_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0 and "S3_ACCESS_KEY_ID" in result.stderr


def test_throttle_counts_are_shared_through_redis_when_it_is_configured(tmp_path):
    """Several web processes must count the same failures: with REDIS_URL the cache is Redis."""
    code = "from django.conf import settings; print(settings.CACHES['default']['BACKEND'])"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "CHIPMUNK_DATA_DIR": str(tmp_path),
           "DATABASE_URL": ""}
    for redis_url, backend in (("redis://redis:6379/0", "django.core.cache.backends.redis.RedisCache"),
                               ("", "django.core.cache.backends.locmem.LocMemCache")):
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "REDIS_URL": redis_url},
                                capture_output=True, text=True, timeout=60)
        assert result.stdout.strip() == backend, result.stderr


def settings_variables() -> set[str]:
    source = (ROOT / "config" / "settings.py").read_text()
    return set(re.findall(r'env_\w+\("([A-Z0-9_]+)"', source))


def test_every_variable_compose_passes_is_read_by_settings():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    read = settings_variables()
    passed: dict[str, set[str]] = {}
    for name in ("web", "worker"):
        env = compose["services"][name].get("environment", {})
        keys = set(env) if isinstance(env, dict) else {item.split("=", 1)[0] for item in env}
        passed[name] = keys
        assert keys, f"compose service {name} passes no environment"
        assert keys <= read, f"{name} passes variables settings never reads: {sorted(keys - read)}"
    assert {"DATABASE_URL", "REDIS_URL", "STORAGE_BACKEND", "S3_ENDPOINT_URL"} <= passed["web"]


def test_env_example_lists_every_setting():
    listed = set(re.findall(r"^#?\s*([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    missing = settings_variables() - listed
    assert not missing, f".env.example lacks {sorted(missing)}"
