"""Chipmunk settings: one file, every knob from the environment.

Defaults run the embedded mode (SQLite, local disk, database search, in-memory channel
layer). Invalid values stop start-up with ImproperlyConfigured naming the variable.
.env.example lists every variable read here.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def parse_size(text: str) -> int:
    """Parse '500MB', '10GB', '1.5GiB' or a plain byte count; ValueError when unreadable."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B?)\s*", text.upper())
    if not match or match.group(2) not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 500MB, 10GB, 2GiB)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def env_bytes(name: str, default: str) -> int:
    raw = os.environ.get(name) or default
    try:
        return parse_size(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a size like 500MB or 10GB, got {raw!r}") from None


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, default).strip().lower() or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


# --- Paths -------------------------------------------------------------------------------
DATA_DIR = Path(env_str("CHIPMUNK_DATA_DIR", str(BASE_DIR / "data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    # Embedded mode keeps a generated key in the data dir so sessions survive restarts.
    configured = env_str("SECRET_KEY")
    if configured:
        return configured
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = [h.strip() for h in env_str("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env_str("CSRF_TRUSTED_ORIGINS").split(",") if o.strip()]
BIND_ADDRESS = env_str("BIND_ADDRESS", "127.0.0.1")
PORT = env_int("PORT", 8000, minimum=1)
WEB_WORKERS = env_int("WEB_WORKERS", 1, minimum=1)
# uvicorn's line per request: ~20 % of a grid thumbnail's CPU (bench/browse.py), so off by
# default (as gunicorn's); errors and the app's own logs are unaffected.
ACCESS_LOG = env_bool("ACCESS_LOG", False)
# Proxies whose X-Forwarded-For/-Proto Chipmunk believes (gallery.web.security), comma-separated
# addresses or networks; "*" believes whoever connects, for one hop (the address it appended).
FORWARDED_ALLOW_IPS = env_str("FORWARDED_ALLOW_IPS", "127.0.0.1")
for _item in [i.strip() for i in FORWARDED_ALLOW_IPS.split(",") if i.strip() not in ("", "*")]:
    try:
        ipaddress.ip_network(_item, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"FORWARDED_ALLOW_IPS must list addresses, networks or *, got {_item!r}") from None
# The most bytes of request line and headers uvicorn reads before answering 431 (config.server).
MAX_REQUEST_HEADER_SIZE = env_bytes("MAX_REQUEST_HEADER_SIZE", "64KiB")
if PORT > 65535:
    raise ImproperlyConfigured(f"PORT must be at most 65535, got {PORT}")

# --- Apps --------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "gallery",
    "media_api",
    "search",
]

MIDDLEWARE = [
    # First: it decides what the proxy headers are worth before anything reads them.
    "gallery.web.security.ProxyHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Above sessions and CSRF, so its response hook sees the cookies they set.
    "gallery.web.security.SecureResponseMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"
AUTH_USER_MODEL = "gallery.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "gallery:timeline"
LOGOUT_REDIRECT_URL = "login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "gallery.login.login_options",
                "gallery.web.views.site",
            ],
        },
    },
]

# --- Database ----------------------------------------------------------------------------
_database_url = env_str("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'chipmunk.sqlite3'}"
try:
    # No persistent connections: under ASGI each request runs in its own thread, and a kept
    # connection per thread would pile up (Django's advice for async); pooling is the answer.
    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=0)}
except Exception as exc:  # dj-database-url raises several types for a bad URL
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the worker write while web requests read; busy timeout rides out short locks.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not memory, so tests can run a real worker process against the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
# Under ASGI each request runs in a thread of its own, so CONN_MAX_AGE keeps no connection
# from one request to the next; a pool per process does, and spares PostgreSQL a connection
# set-up (and the request its round trips) each time.
if env_bool("DATABASE_POOL", False):
    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_POOL needs a PostgreSQL DATABASE_URL")
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django refuses persistent connections with a pool
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis and channels ------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# Login throttling counts here (gallery.throttle): in Redis every web process and host shares
# them; without REDIS_URL each process keeps its own (fine for the embedded single process).
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "KEY_PREFIX": "chipmunk"}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Storage -----------------------------------------------------------------------------
STORAGE_BACKEND = env_choice("STORAGE_BACKEND", "local", ("local", "s3"))
MEDIA_ROOT = DATA_DIR / "media"
S3_ENDPOINT_URL = env_str("S3_ENDPOINT_URL")
S3_BUCKET = env_str("S3_BUCKET", "chipmunk")
S3_REGION = env_str("S3_REGION", "us-east-1")
S3_ACCESS_KEY_ID = env_str("S3_ACCESS_KEY_ID")
S3_SECRET_ACCESS_KEY = env_str("S3_SECRET_ACCESS_KEY")
# The endpoint browsers and phones reach, for presigned URLs; empty: the same as S3_ENDPOINT_URL.
S3_PUBLIC_ENDPOINT_URL = env_str("S3_PUBLIC_ENDPOINT_URL")


def s3_storage_config(*, bucket: str, endpoint_url: str, region: str, access_key: str, secret_key: str) -> dict:
    """The STORAGES entry for an S3/MinIO bucket (tests build theirs with it too)."""
    # Imported here: botocore.config pulls in urllib3 and OpenSSL, a tenth of a second at
    # every start of a process that only uses local disk (import_folder, the worker).
    from botocore.config import Config as _BotoConfig

    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint_url or None,
            "region_name": region,
            "access_key": access_key,
            "secret_key": secret_key,
            # MinIO wants path-style addressing and SigV4.
            "addressing_style": "path",
            "signature_version": "s3v4",
            "file_overwrite": True,
            "default_acl": None,
            "querystring_auth": True,
            # Fail fast when the object store is down instead of retrying for a minute.
            "client_config": _BotoConfig(connect_timeout=5, read_timeout=60,
                                         retries={"max_attempts": 3, "mode": "standard"},
                                         s3={"addressing_style": "path"}, signature_version="s3v4"),
        },
    }


def local_storage_config(location: Path | str) -> dict:
    return {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(location), "base_url": None, "directory_permissions_mode": 0o750,
                    "file_permissions_mode": 0o640},
    }


if STORAGE_BACKEND == "s3":
    for _name in ("S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "S3_BUCKET"):
        if not globals()[_name]:
            raise ImproperlyConfigured(f"{_name} is required when STORAGE_BACKEND=s3")
    _media_storage = s3_storage_config(bucket=S3_BUCKET, endpoint_url=S3_ENDPOINT_URL, region=S3_REGION,
                                       access_key=S3_ACCESS_KEY_ID, secret_key=S3_SECRET_ACCESS_KEY)
else:
    _media_storage = local_storage_config(MEDIA_ROOT)

STORAGES = {
    "default": _media_storage,
    "media": _media_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(DATA_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- Uploads and quotas ------------------------------------------------------------------
def env_plans(name: str, default: str) -> dict[str, int]:
    """Quota plans like 'free:10GB,plus:150GB', in that order: name -> bytes."""
    raw = os.environ.get(name) or default
    plans: dict[str, int] = {}
    for item in raw.split(","):
        plan, _, size = item.strip().partition(":")
        try:
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", plan) or plan in plans:
                raise ValueError
            plans[plan] = parse_size(size)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} must list distinct plans like free:10GB,plus:150GB (lowercase names); got {raw!r}") from None
    return plans


# A user has a plan and the quota follows it, unless the admin gave them a quota of their own.
QUOTA_PLANS = env_plans("QUOTA_PLANS", "free:10GB,plus:150GB,pro:500GB")
DEFAULT_PLAN = env_str("DEFAULT_PLAN", "free")
if DEFAULT_PLAN not in QUOTA_PLANS:
    raise ImproperlyConfigured(f"DEFAULT_PLAN must be one of QUOTA_PLANS ({', '.join(QUOTA_PLANS)}); got {DEFAULT_PLAN!r}")
# Request bodies bigger than this go to a temporary file instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = env_bytes("FILE_UPLOAD_MAX_MEMORY_SIZE", "4MiB")
DATA_UPLOAD_MAX_MEMORY_SIZE = FILE_UPLOAD_MAX_MEMORY_SIZE
FILE_UPLOAD_TEMP_DIR = str(DATA_DIR / "tmp")
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
# Resumable uploads (tus at /api/v1/uploads/, direct-to-S3 at /api/v1/direct-uploads/).
TUS_MAX_SIZE = env_bytes("TUS_MAX_SIZE", "50GB")
# An upload nobody touches for this long expires: its bytes go, its reservation is released.
UPLOAD_EXPIRY_HOURS = env_int("UPLOAD_EXPIRY_HOURS", 24, minimum=1)
# A finished export (a zip of a whole library, in the user's storage) is deleted this long after.
EXPORT_KEEP_HOURS = env_int("EXPORT_KEEP_HOURS", 72, minimum=1)
# Unfinished uploads (tus and direct) one user may hold at once; one more is a 429.
UPLOAD_MAX_ACTIVE = env_int("UPLOAD_MAX_ACTIVE", 100, minimum=1)
# Largest tus Upload-Metadata header: it is stored with the upload, outside the quota.
UPLOAD_METADATA_MAX_BYTES = env_bytes("UPLOAD_METADATA_MAX_BYTES", "4KiB")
# S3 multipart part sizes (tus through us / presigned direct parts); grown to fit 10,000 parts.
TUS_S3_PART_SIZE = env_bytes("TUS_S3_PART_SIZE", "8MiB")
DIRECT_UPLOAD_PART_SIZE = env_bytes("DIRECT_UPLOAD_PART_SIZE", "16MiB")
for _name in ("TUS_S3_PART_SIZE", "DIRECT_UPLOAD_PART_SIZE"):
    if not 5 * 2**20 <= globals()[_name] <= 5 * 2**30:
        raise ImproperlyConfigured(f"{_name} must be between 5MiB and 5GiB (S3's part limits)")
# The trash: DELETE moves a media there; the worker purges it for good after this many days.
TRASH_DAYS = env_int("TRASH_DAYS", 30, minimum=1)

# --- Background jobs ---------------------------------------------------------------------
# "inline" runs jobs in the caller after commit (tests); "queue" stores them for the worker.
JOBS_MODE = env_choice("JOBS_MODE", "queue", ("queue", "inline"))
WORKER_CONCURRENCY = env_int("WORKER_CONCURRENCY", 2, minimum=1)
JOB_LEASE_SECONDS = env_int("JOB_LEASE_SECONDS", 300, minimum=5)
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 3, minimum=1)
JOB_RETRY_BASE_SECONDS = env_int("JOB_RETRY_BASE_SECONDS", 10, minimum=0)
# `run` starts the worker in the same process group unless told not to (compose runs it apart).
RUN_WORKER = env_bool("RUN_WORKER", True)

# --- Processing --------------------------------------------------------------------------
MAX_IMAGE_PIXELS = env_int("MAX_IMAGE_PIXELS", 100_000_000, minimum=1)
# Make a VP9/Opus webm for videos browsers cannot play (avi, hevc, ...): CPU-heavy, off by default.
VIDEO_TRANSCODE = env_bool("VIDEO_TRANSCODE", False)

# --- Search ------------------------------------------------------------------------------
SEARCH_BACKEND = env_choice("SEARCH_BACKEND", "db", ("db", "meilisearch"))
MEILISEARCH_URL = env_str("MEILISEARCH_URL")
MEILISEARCH_API_KEY = env_str("MEILISEARCH_API_KEY")
MEILISEARCH_INDEX = env_str("MEILISEARCH_INDEX", "media")
if SEARCH_BACKEND == "meilisearch" and not MEILISEARCH_URL:
    raise ImproperlyConfigured("MEILISEARCH_URL is required when SEARCH_BACKEND=meilisearch")

# --- Login -------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
# Password login; false leaves only the OpenID provider (which then must be configured).
LOCAL_LOGIN = env_bool("LOCAL_LOGIN", True)
# Login through an OpenID Connect provider (Keycloak, Authentik, Authelia; gallery.login,
# gallery.identity). Its endpoints come from <issuer>/.well-known/openid-configuration,
# fetched on first use and cached (gallery.identity.provider): start-up never waits for the
# provider, and a provider that is down gives a clear page instead of a server that won't start.
OIDC_ISSUER_URL = env_str("OIDC_ISSUER_URL").strip().rstrip("/")
OIDC_CLIENT_ID = env_str("OIDC_CLIENT_ID")
OIDC_CLIENT_SECRET = env_str("OIDC_CLIENT_SECRET")
OIDC_PROVIDER_NAME = env_str("OIDC_PROVIDER_NAME", "single sign-on")
OIDC_SCOPES = env_str("OIDC_SCOPES", "openid email profile")
# Link a first provider login to a local account with the same (verified) e-mail.
OIDC_LINK_BY_EMAIL = env_bool("OIDC_LINK_BY_EMAIL", False)
# The claim whose first value naming a plan sets the user's plan at each login.
OIDC_PLAN_CLAIM = env_str("OIDC_PLAN_CLAIM", "groups")
# Provider access tokens on the API: RFC 7662 introspection (default: the discovery
# document's introspection_endpoint), or JWT verification against the provider's keys.
OIDC_INTROSPECTION_URL = env_str("OIDC_INTROSPECTION_URL")
OIDC_ACCESS_TOKEN_JWT = env_bool("OIDC_ACCESS_TOKEN_JWT", False)
# The audience a JWT access token must name; empty: OIDC_CLIENT_ID.
OIDC_ACCESS_TOKEN_AUDIENCE = env_str("OIDC_ACCESS_TOKEN_AUDIENCE")
# Seconds to wait for the provider.
OIDC_TIMEOUT = env_int("OIDC_TIMEOUT", 10, minimum=1)
if OIDC_ISSUER_URL and not (OIDC_CLIENT_ID and OIDC_CLIENT_SECRET):
    raise ImproperlyConfigured("OIDC_ISSUER_URL needs OIDC_CLIENT_ID and OIDC_CLIENT_SECRET")
if not OIDC_ISSUER_URL and not LOCAL_LOGIN:
    raise ImproperlyConfigured("LOCAL_LOGIN=false needs an OpenID provider: set OIDC_ISSUER_URL")
if OIDC_ISSUER_URL and not OIDC_ISSUER_URL.startswith(("https://", "http://")):
    raise ImproperlyConfigured(f"OIDC_ISSUER_URL must be an http(s) URL, got {OIDC_ISSUER_URL!r}")
# The same, under the names mozilla-django-oidc reads (endpoints come from discovery).
OIDC_RP_CLIENT_ID = OIDC_CLIENT_ID
OIDC_RP_CLIENT_SECRET = OIDC_CLIENT_SECRET
OIDC_RP_SCOPES = OIDC_SCOPES
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_USE_PKCE = True
OIDC_STORE_ID_TOKEN = True  # the id_token_hint of the provider's logout
OIDC_AUTHENTICATE_CLASS = "gallery.login.ProviderLoginView"
OIDC_CALLBACK_CLASS = "gallery.login.ProviderCallbackView"
OIDC_OP_LOGOUT_URL_METHOD = "gallery.login.provider_logout_url"
AUTHENTICATION_BACKENDS = [
    *(["django.contrib.auth.backends.ModelBackend"] if LOCAL_LOGIN else []),
    "gallery.login.ProviderBackend",
]
# Failed logins (/login/, /admin/login/) allowed per window, per account and per client address,
# before 429 with Retry-After; the window is fixed and then starts over (gallery.throttle).
THROTTLE_WINDOW_SECONDS = env_int("THROTTLE_WINDOW_SECONDS", 60, minimum=1)
LOGIN_FAILURES_PER_ACCOUNT = env_int("LOGIN_FAILURES_PER_ACCOUNT", 5, minimum=1)
LOGIN_FAILURES_PER_ADDRESS = env_int("LOGIN_FAILURES_PER_ADDRESS", 20, minimum=1)
# Wrong share-link passwords allowed per window, per share and per client address.
SHARE_PASSWORD_FAILURES_PER_SHARE = env_int("SHARE_PASSWORD_FAILURES_PER_SHARE", 10, minimum=1)
SHARE_PASSWORD_FAILURES_PER_ADDRESS = env_int("SHARE_PASSWORD_FAILURES_PER_ADDRESS", 20, minimum=1)
# Wrong vault passphrases or recovery keys allowed per user and window (gallery.services.vault).
VAULT_UNLOCK_FAILURES = env_int("VAULT_UNLOCK_FAILURES", 5, minimum=1)
# scope -> (failures allowed, window in seconds).
THROTTLE_RULES = {
    "login-account": (LOGIN_FAILURES_PER_ACCOUNT, THROTTLE_WINDOW_SECONDS),
    "login-address": (LOGIN_FAILURES_PER_ADDRESS, THROTTLE_WINDOW_SECONDS),
    "share-password": (SHARE_PASSWORD_FAILURES_PER_SHARE, THROTTLE_WINDOW_SECONDS),
    "share-address": (SHARE_PASSWORD_FAILURES_PER_ADDRESS, THROTTLE_WINDOW_SECONDS),
    "vault-unlock": (VAULT_UNLOCK_FAILURES, THROTTLE_WINDOW_SECONDS),
}
# How long an unlocked password-protected share stays open in a browser (its signed cookie).
SHARE_UNLOCK_SECONDS = env_int("SHARE_UNLOCK_SECONDS", 7 * 24 * 3600, minimum=60)

# --- Sync for phones (gallery.services.changes) --------------------------------------------
# Days a deletion is remembered for /api/v1/sync/; an older cursor gets 410 full_sync_required.
SYNC_TOMBSTONE_DAYS = env_int("SYNC_TOMBSTONE_DAYS", 90, minimum=1)

# --- The vault (gallery.vault, docs/vault.md) ----------------------------------------------
# Argon2id for the passphrase: at least 64 MiB and 3 passes. The defaults, 128 MiB and 4
# passes, take about 0.37 s on a quiet 2-core machine (the issue's aim: 0.3-1 s; 64 MiB and
# 3 passes took 0.15 s). A keyring keeps the parameters it was made with, so changing these
# applies to new vaults and passphrase changes.
VAULT_ARGON2_MEMORY_KIB = env_int("VAULT_ARGON2_MEMORY_KIB", 131072, minimum=65536)
VAULT_ARGON2_TIME_COST = env_int("VAULT_ARGON2_TIME_COST", 4, minimum=3)
VAULT_ARGON2_PARALLELISM = env_int("VAULT_ARGON2_PARALLELISM", 1, minimum=1)
# An unlocked credential locks itself after this many minutes without use.
VAULT_IDLE_MINUTES = env_int("VAULT_IDLE_MINUTES", 15, minimum=1)
VAULT_PASSPHRASE_MIN_LENGTH = 10
# Where processing decrypts a vault original for the time of its job: memory (/dev/shm) when
# there is one, so no plaintext reaches a disk; the directory is emptied before the job ends.
VAULT_TEMP_DIR = env_str("VAULT_TEMP_DIR", "/dev/shm" if Path("/dev/shm").is_dir() else str(DATA_DIR / "tmp"))
# How long a queued vault processing job may wait for a worker before its key is gone.
VAULT_JOB_KEY_HOURS = env_int("VAULT_JOB_KEY_HOURS", 24, minimum=1)

# --- HTTPS and browser policies (gallery.web.security) -------------------------------------
# A request is secure when it came over TLS, or a trusted proxy (FORWARDED_ALLOW_IPS) says
# X-Forwarded-Proto: https; the middleware drops that header from anyone else.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Sent on secure responses only; 0 sends none.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
# The map page's tiles: a URL template with {z}, {x} and {y} (optionally {s}), on another
# origin (the one origin the CSP lets pages load from besides our own) or a path on this site.
MAP_TILE_URL = env_str("MAP_TILE_URL", "https://tile.openstreetmap.org/{z}/{x}/{y}.png")


def map_tile_origin(url: str) -> str:
    """The origin the CSP must allow for MAP_TILE_URL ("" for a path on this site)."""
    from urllib.parse import urlsplit

    if not all(part in url for part in ("{z}", "{x}", "{y}")):
        raise ImproperlyConfigured("MAP_TILE_URL must contain {z}, {x} and {y}")
    if url.startswith("/") and not url.startswith("//"):
        return ""
    parts = urlsplit(url.replace("{s}", "a"))
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c in url for c in " ;,'\""):
        raise ImproperlyConfigured("MAP_TILE_URL must be an http(s) URL or a path starting with /")
    host = url.split("://", 1)[1].split("/", 1)[0]
    return f"{parts.scheme}://{host.replace('{s}', '*')}"


# On every HTML page. Templates carry no inline script or style: everything is under static/.
_IMG_SOURCES = " ".join(filter(None, ["'self'", map_tile_origin(MAP_TILE_URL), "data:", "blob:"]))
CONTENT_SECURITY_POLICY = (f"default-src 'self'; script-src 'self'; style-src 'self'; img-src {_IMG_SOURCES}; "
                           "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'")
# /health/ shows its details (queue counts, cache sizes, errors) to staff sessions and to
# `Authorization: Bearer <token>` or ?token=<token>; anonymous callers see status and ok only.
HEALTH_TOKEN = env_str("HEALTH_TOKEN")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "gallery.auth.ApiKeyAuthentication",
        "gallery.auth.ProviderTokenAuthentication",
        "gallery.auth.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["media_api.auth.HasScope"],
    "EXCEPTION_HANDLER": "media_api.errors.exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "media_api.parsers.JSONParser",  # deep nesting is a 400
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# --- OpenAPI (drf-spectacular; media_api.schema) ------------------------------------------
SPECTACULAR_SETTINGS = {
    "TITLE": "Chipmunk API",
    "DESCRIPTION": "The library of the caller: uploads (multipart, tus 1.0, direct to S3), media, "
                   "usage. Every 4xx is `{\"error\", \"detail\"}`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "PREPROCESSING_HOOKS": ["media_api.schema.drop_slashless_aliases"],
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "media_api.schema.errors_everywhere"],
    # Vendored (static/vendor/), so /api/docs/ works offline and under our CSP.
    "SWAGGER_UI_DIST": "/" + STATIC_URL.strip("/") + "/vendor/swagger-ui-dist-5.35.0",
    "SWAGGER_UI_FAVICON_HREF": STATIC_URL.rstrip("/") + "/vendor/swagger-ui-dist-5.35.0/favicon-32x32.png",
}

# --- i18n --------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()},
    # These log the tag values of every file they read at DEBUG (names, descriptions, places):
    # never, whatever LOG_LEVEL says, or vault items' metadata would reach the logs.
    "loggers": {name: {"level": "INFO"} for name in ("exifread", "PIL", "mutagen", "libav")},
}

# --- Media delivery (gallery.delivery.views, gallery.delivery.blobcache) --------------------------------
# stream: Django sends the bytes itself (embedded mode); x-accel: Django authorises and nginx
# sends the file from its internal location; redirect: 302 to a presigned S3 URL.
DELIVERY_MODE = env_choice("DELIVERY_MODE", "stream", ("stream", "x-accel", "redirect"))
DELIVERY_ACCEL_PREFIX = env_str("DELIVERY_ACCEL_PREFIX", "/_protected/")
if not (DELIVERY_ACCEL_PREFIX.startswith("/") and DELIVERY_ACCEL_PREFIX.endswith("/")):
    raise ImproperlyConfigured(f"DELIVERY_ACCEL_PREFIX must start and end with '/', got {DELIVERY_ACCEL_PREFIX!r}")
DELIVERY_PRESIGN_SECONDS = env_int("DELIVERY_PRESIGN_SECONDS", 300, minimum=1)
# Threads per web process for GET/HEAD /m/ (gallery.delivery.fast); each keeps its database
# connection between requests (with DATABASE_POOL it borrows one per request instead).
DELIVERY_THREADS = env_int("DELIVERY_THREADS", 8, minimum=1)
# SQLite: the express lane (gallery.delivery.express) reads a grid tile's rows and file on the
# event loop itself (never waiting for a lock) instead of hopping to one of those threads.
DELIVERY_INLINE = env_bool("DELIVERY_INLINE", True)
if DELIVERY_MODE == "redirect" and STORAGE_BACKEND != "s3":
    raise ImproperlyConfigured("DELIVERY_MODE=redirect needs STORAGE_BACKEND=s3: local files have no presigned URLs")
if DELIVERY_MODE == "x-accel" and STORAGE_BACKEND != "local":
    raise ImproperlyConfigured("DELIVERY_MODE=x-accel needs STORAGE_BACKEND=local: nginx serves files from the media root")


def env_fraction(name: str, default: str) -> float:
    """A share like 0.25 or 25%, above 0 and at most 1."""
    raw = (os.environ.get(name) or default).strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a fraction like 0.25 or 25%, got {raw!r}") from None
    if not 0 < value <= 1:
        raise ImproperlyConfigured(f"{name} must be above 0 and at most 1 (or 100%), got {raw!r}")
    return value


# Read-through disk cache of S3 blocks for stream mode; 0 disables it. One owner may fill
# at most BLOB_CACHE_USER_SHARE of it before evicting their own blocks.
BLOB_CACHE_BYTES = env_bytes("BLOB_CACHE_BYTES", "2GB")
BLOB_CACHE_USER_SHARE = env_fraction("BLOB_CACHE_USER_SHARE", "50%")
BLOB_CACHE_DIR = DATA_DIR / "cache"
