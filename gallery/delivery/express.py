"""The express lane of /m/: a plain GET or HEAD of a small variant, decided and answered in
one hop, without building Django's request, middleware chain, DRF request or model objects.

A screen of the grid is a hundred thumbnails; each cost ~4-10 ms of CPU through the lean
door, nearly all of it Python building objects and SQL (HttpRequest, eight middlewares, the
DRF Request and authenticators, three querysets compiled, model instances, a streaming
response). Here the same decisions are taken on plain values:

- who: the session cookie (django.contrib.sessions' db engine) or an API key
  (`Bearer chip_...`), checked exactly as gallery.auth's classes do it: for a session, the
  row unexpired, the user id and backend from its data, the user active, the session's
  auth hash equal to the user's (a changed password logs out); for a key, the active key
  with this prefix, its SHA-256 matching, its user active, a media scope, and its last use
  recorded less than a minute ago (else the full path records it).
- what: the one rule, Media.objects.visible_to(user), compiled once per process by the ORM
  into SQL with the user, token and level as parameters (`CompiledQuery`); a rule that
  cannot be compiled that way (reads anything of the user but its id, or a value that is
  not a parameter, such as the time) turns the lane off.
- the answer: the headers of gallery.delivery.views (ranges.evaluate's 200, the common
  headers) and those the middleware adds, learned once by running the real middleware
  chain over a synthetic request (secure and not), and the file's bytes in one message.

Where it runs: on SQLite on the event loop, on a read-only connection of its own (`answer_here`);
on PostgreSQL on the event loop too, its reads batched with those of concurrent requests
(gallery.delivery.pgbatch, on the same compiled queries and the same checks); with
DELIVERY_INLINE=false, and for the first request (which compiles the queries), in one hop to
a delivery thread (`answer`).

Nothing that decides access is cached: every request reads the session, the key, the user
and the media rows afresh (2-3 indexed reads on a kept connection), so a logout, a revoked
key, a changed password, a deactivated user, a rotated token, a trashed, deleted or vaulted
media stop delivery with the next request, in every process. What is cached is pure: the
decoded session data by its signed text, a password's session hash, a row's headers.

Anything else takes the lean door (gallery.delivery.fast), which answers it: originals,
query strings that are not plain ASCII, Range and conditional requests, other credentials
(provider tokens) or none, a duplicated header, a host that is not allowed, a variant over
EXPRESS_MAX_BYTES, DELIVERY_MODE other than stream, S3 storage, and every refusal (so a
404 is always the full path's own answer), and any error.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
from django.contrib.auth.backends import ModelBackend
from django.contrib.sessions.backends.db import SessionStore as DbSessionStore
from django.core.handlers.asgi import ASGIRequest
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpResponse
from django.http.cookie import parse_cookie
from django.http.request import split_domain_port, validate_host
from django.utils.dateparse import parse_datetime
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from gallery.auth import READ, READ_WRITE
from gallery.compiled import CompiledQuery, sample_user
from gallery.delivery import ranges
from gallery.delivery.views import SANDBOX_CSP, VARIANT_CACHE_CONTROL
from gallery.delivery.views import _key_digest as key_digest  # the ETag of a variant, as views computes it
from gallery.models import ApiKey, Media, User, Variant
from gallery.processing.filetypes import safe_served_type
from gallery.services.accounts import KEY_PREFIX
from gallery.storage import is_s3, media_storage
from gallery.web.security import is_trusted_proxy

log = logging.getLogger(__name__)

# Larger variants (level 6, video plays) are streamed by the lean door in chunks.
EXPRESS_MAX_BYTES = 256 * 1024
# What the event loop may read itself (from the page cache, like nginx without aio): grid tiles.
INLINE_MAX_BYTES = 64 * 1024
# The middleware this lane was checked against: another one in MIDDLEWARE turns it off.
KNOWN_MIDDLEWARE = (
    "gallery.web.security.ProxyHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "gallery.web.security.SecureResponseMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
)
KNOWN_AUTHENTICATION = ("gallery.auth.ApiKeyAuthentication", "gallery.auth.ProviderTokenAuthentication",
                        "gallery.auth.SessionAuthentication")
DB_SESSIONS = "django.contrib.sessions.backends.db"
# Headers whose presence sends a request to the lean door (ranges and conditionals).
_DELEGATED = frozenset({b"range", b"if-range", b"if-match", b"if-none-match", b"if-modified-since",
                        b"if-unmodified-since"})
_WATCHED = frozenset({b"host", b"cookie", b"authorization", b"x-forwarded-proto"})
_CACHE_LIMIT = 4096
Answer = tuple[list[tuple[bytes, bytes]], bytes]


@dataclass(frozen=True)
class Ask:
    """A request the lane may answer: the parsed parts of the ASGI scope."""

    token: str
    level: str
    head: bool
    secure: bool
    api_key: str | None  # the raw `chip_...` key, or None for a session
    session_key: str | None


def _variant_query(user_id: uuid.UUID, token: str, level: str):
    visible = Media.objects.visible_to(sample_user(user_id)).filter(token=token)
    return (Variant.objects.filter(level=level, media__in=visible).order_by("pk")
            .values_list("storage_key", "size", "content_type", "created_at")[:1])


def _api_key_query(prefix: str):
    return (ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True).order_by("pk")
            .values_list("hashed_secret", "scopes", "last_used_at", "user_id", "user__is_active")[:1])


def _session_query(session_key: str, now: datetime):
    return (DbSessionStore.get_model_class().objects.filter(session_key=session_key, expire_date__gt=now)
            .values_list("session_data")[:1])


def _user_query(pk: uuid.UUID):
    return User.objects.filter(pk=pk).values_list("password", "is_active")[:1]


def _aware(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        moment = value
    else:
        moment = parse_datetime(value)
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def watched_headers(scope: dict, watched: frozenset, delegated: frozenset = frozenset()) -> dict[bytes, bytes] | None:
    """The request's headers named in `watched`; None (the lean door's) when one comes twice
    (Django's request would join them) or any named in `delegated` is there."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in delegated:
            return None
        if name in watched:
            if name in found:
                return None
            found[name] = value
    return found


@contextmanager
def thread_connection() -> Iterator:
    """A delivery thread's database connection for one request: closed after an error that
    left it unusable; kept afterwards, as the lean door keeps its threads' (CONN_MAX_AGE is
    for Django's own threads), or given back to psycopg's pool between requests."""
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        yield connection
    except Exception:
        if connection.connection is not None and (connection.errors_occurred or not connection.is_usable()):
            connection.close()
        raise
    finally:
        if getattr(connection, "pool", None) is not None:
            connection.close()  # a pooled connection goes back between requests
        elif connection.connection is not None:
            connection.close_at = None


def lane_reason_off(modes: tuple[str, ...]) -> str:
    """Why a lane (this one, or the streams' for `modes`) is off, or "": the settings it was
    checked against are not these ones."""
    if tuple(settings.MIDDLEWARE) != KNOWN_MIDDLEWARE:
        return "MIDDLEWARE is not the one it was checked against"
    if tuple(settings.REST_FRAMEWORK.get("DEFAULT_AUTHENTICATION_CLASSES", ())) != KNOWN_AUTHENTICATION:
        return "the authentication classes are not the ones it was checked against"
    if settings.DELIVERY_MODE not in modes or is_s3():
        return f"DELIVERY_MODE is not {' or '.join(modes)} on local storage"
    if settings.USE_X_FORWARDED_HOST or settings.SESSION_SAVE_EVERY_REQUEST:
        return "USE_X_FORWARDED_HOST or SESSION_SAVE_EVERY_REQUEST is set"
    return ""


class Express:
    """The lane: `ask` parses a scope on the event loop; `answer_here` (SQLite) answers there,
    `answer` in a delivery thread; gallery.delivery.pgbatch answers on PostgreSQL's event loop."""

    def __init__(self, chain_for: Callable) -> None:
        self.chain_for = chain_for  # the lean door's middleware chain around a given view
        self.sessions = settings.SESSION_ENGINE == DB_SESSIONS
        self.reason_off = self._reason_off()
        if self.reason_off:
            log.info("express lane for /m/ off: %s", self.reason_off)
        self._compiled: dict[str, CompiledQuery] | None = None
        self._lock = threading.Lock()
        self._hosts: dict[str, bool] = {}
        self._sessions: dict[str, dict] = {}
        self._auth_hashes: dict[str, str] = {}
        self._targets: dict[tuple, tuple] = {}
        self._middleware_headers: dict[bool, list[tuple[bytes, bytes]] | None] = {}
        self.cookie_name = settings.SESSION_COOKIE_NAME
        name = str(connections[DEFAULT_DB_ALIAS].settings_dict["NAME"])
        vendor = connections[DEFAULT_DB_ALIAS].vendor
        self.inline = vendor == "sqlite" and "memory" not in name and settings.DELIVERY_INLINE
        self.batched = vendor == "postgresql" and settings.DELIVERY_INLINE and not self.reason_off
        self._local = threading.local()

    @staticmethod
    def _reason_off() -> str:
        return lane_reason_off(("stream",))

    # --- On the event loop: is this a request for the lane? ---------------------------------
    def ask(self, scope: dict, token: str, level: str) -> Ask | None:
        if self.reason_off or level == "0":
            return None
        query = scope.get("query_string", b"")
        if query and not query.isascii():
            return None
        found = watched_headers(scope, _WATCHED, _DELEGATED)
        return None if found is None else self.credential(scope, found, token, level)

    def credential(self, scope: dict, found: dict[bytes, bytes], token: str, level: str) -> Ask | None:
        """The Ask of a request whose watched headers are `found` (watched_headers): its host
        allowed, its scheme, and an API key or a db session's key; None for the lean door."""
        try:
            host = found[b"host"].decode("latin-1")
        except KeyError:
            return None
        if not self._host_allowed(host):
            return None
        secure = scope.get("scheme") == "https"
        forwarded = found.get(b"x-forwarded-proto")
        if forwarded is not None and _trusted_proxy(scope):
            secure = forwarded.decode("latin-1").split(",", 1)[0].strip() == "https"
        authorization = found.get(b"authorization")
        if authorization is not None:
            scheme, _, raw = authorization.decode("latin-1").partition(" ")
            raw = raw.strip()
            if scheme.lower() != "bearer" or not raw.startswith(KEY_PREFIX):
                return None  # a provider token, or a header the full path decides about
            return Ask(token, level, scope["method"] == "HEAD", secure, raw, None)
        cookie = found.get(b"cookie")
        if cookie is None or not self.sessions:
            return None
        session_key = parse_cookie(cookie.decode("latin-1")).get(self.cookie_name)
        if not session_key or len(session_key) < 8:
            return None
        return Ask(token, level, scope["method"] == "HEAD", secure, None, session_key)

    def _host_allowed(self, host: str) -> bool:
        allowed = self._hosts.get(host)
        if allowed is None:
            hosts = settings.ALLOWED_HOSTS
            if settings.DEBUG and not hosts:
                hosts = [".localhost", "127.0.0.1", "[::1]"]  # as HttpRequest.get_host
            domain, _ = split_domain_port(host)
            allowed = bool(domain) and validate_host(domain, hosts)
            if len(self._hosts) < _CACHE_LIMIT:
                self._hosts[host] = allowed
        return allowed

    # --- In a delivery thread: authorize, read, answer --------------------------------------
    def answer(self, ask: Ask) -> Answer | None:
        """(headers, body) of the 200, or None for the lean door to answer."""
        try:
            with thread_connection() as connection:
                queries = self._queries()
                extra = self._middleware(ask.secure)
                if queries is None or extra is None:
                    return None
                with connection.cursor() as cursor:
                    target = self._decide(lambda name, *args: queries[name].rows(cursor, *args), ask)
                return self.respond(ask, target, extra, EXPRESS_MAX_BYTES) if target else None
        except Exception:
            log.debug("express lane: handing over to the lean door", exc_info=True)
            return None

    # --- On the event loop, SQLite only: the same without the hop ----------------------------
    def answer_here(self, ask: Ask) -> Answer | None:
        """The same answer on the event loop's own read-only SQLite connection, which never waits
        for a lock (busy timeout 0) and reads files up to INLINE_MAX_BYTES; None when it cannot
        (not compiled yet, busy, refused, larger): then `answer` runs in a delivery thread."""
        queries, extra = self._compiled, self._middleware_headers.get(ask.secure)
        if not self.inline or not queries or extra is None:
            return None
        try:
            connection = self.loop_connection()
            target = self._decide(lambda name, *args: queries[name].rows_here(connection, *args), ask)
            return self.respond(ask, target, extra, INLINE_MAX_BYTES) if target else None
        except Exception:
            log.debug("express lane: handing over to a delivery thread", exc_info=True)
            self.drop_loop_connection()
            return None

    def loop_connection(self) -> sqlite3.Connection:
        """The event loop's read-only SQLite connection (its own: never waits for a lock)."""
        connection = getattr(self._local, "sqlite", None)
        if connection is None:
            name = connections[DEFAULT_DB_ALIAS].settings_dict["NAME"]
            connection = sqlite3.connect(name, timeout=0, isolation_level=None)
            connection.execute("PRAGMA query_only = ON")
            self._local.sqlite = connection
        return connection

    def drop_loop_connection(self) -> None:
        """After an error on it: a new one next time."""
        broken = self._local.__dict__.pop("sqlite", None)
        if broken is not None:
            broken.close()

    def _decide(self, rows: Callable, ask: Ask) -> tuple | None:
        user_id = (self._api_key_user(rows, ask.api_key) if ask.api_key else self._session_user(rows, ask.session_key))
        if user_id is None:
            return None
        found = rows("variant", user_id, ask.token, ask.level)
        return self.target(found[0]) if found else None

    @staticmethod
    def respond(ask: Ask, target: tuple, extra: list, limit: int) -> Answer | None:
        path, size, headers = target
        if size > limit:
            return None
        body = b""
        if not ask.head:
            with open(path, "rb") as fh:
                body = fh.read(size + 1)
            if len(body) != size:
                return None
        headers = headers + extra
        if ask.api_key is None:
            headers = headers + [(b"Vary", b"Cookie")]
        return headers, body

    def _queries(self) -> dict[str, CompiledQuery] | None:
        if self._compiled is None:
            with self._lock:
                if self._compiled is None:
                    users = (uuid.UUID(int=1), uuid.UUID(int=2))
                    times = (datetime(2001, 1, 1, tzinfo=UTC), datetime(2002, 2, 2, tzinfo=UTC))
                    try:
                        self._compiled = {
                            "variant": CompiledQuery(_variant_query, ((users[0], "tokenA", "lA"),
                                                                      (users[1], "tokenB", "lB"))),
                            "api_key": CompiledQuery(_api_key_query, (("prefixA",), ("prefixB",))),
                            "session": CompiledQuery(_session_query, (("sessionA", times[0]),
                                                                      ("sessionB", times[1]))),
                            "user": CompiledQuery(_user_query, ((users[0],), (users[1],))),
                        }
                        for secure in (False, True):
                            self._middleware(secure)
                    except Exception as exc:
                        self.reason_off = f"the visibility rule cannot be compiled to one query, or the middleware's " \
                                          f"headers cannot be learned ({exc!r})"
                        log.warning("express lane for /m/ off: %s", self.reason_off)
                        self._compiled = {}
        return self._compiled or None

    def _api_key_user(self, rows: Callable, raw: str) -> uuid.UUID | None:
        prefix = key_prefix(raw)
        found = rows("api_key", prefix) if prefix else None
        return key_holder(raw, *found[0]) if found else None

    def _session_user(self, rows: Callable, session_key: str) -> uuid.UUID | None:
        found = rows("session", session_key, datetime.now(UTC))
        claims = self.session_claims(found[0][0]) if found else None
        if claims is None:
            return None
        user = rows("user", claims[0])
        return claims[0] if user and self.session_holds(claims, *user[0]) else None

    def session_claims(self, session_data: str) -> tuple[uuid.UUID, str] | None:
        """(user id, session auth hash) of a session row's data, if it names a user of a backend
        that loads users by primary key; as SessionMiddleware, django.contrib.auth.get_user and
        DRF's SessionAuthentication read it."""
        data = self._sessions.get(session_data)
        if data is None:
            data = DbSessionStore().decode(session_data)
            if len(self._sessions) >= _CACHE_LIMIT:
                self._sessions.clear()
            self._sessions[session_data] = data
        try:
            user_id = User._meta.pk.to_python(data[SESSION_KEY])
            backend_path = data[BACKEND_SESSION_KEY]
            session_hash = data.get(HASH_SESSION_KEY)
        except Exception:  # no user in the session, or an id that is not one
            return None
        if backend_path not in settings.AUTHENTICATION_BACKENDS or not session_hash:
            return None
        if not _loads_user_by_pk(load_backend(backend_path)):
            return None
        return user_id, session_hash

    def session_holds(self, claims: tuple[uuid.UUID, str], password: str | None, active: bool | None) -> bool:
        """Whether the user row (its password, is_active) still honours the session's claims: the
        user active, the session's hash that of the password (a changed password logs out)."""
        if password is None or not active:
            return False
        expected = self._auth_hashes.get(password)
        if expected is None:
            expected = User(password=password).get_session_auth_hash()
            if len(self._auth_hashes) >= _CACHE_LIMIT:
                self._auth_hashes.clear()
            self._auth_hashes[password] = expected
        return hmac.compare_digest(claims[1], expected)  # else fallback secrets: the full path decides

    def target(self, row: tuple) -> tuple[str, int, list[tuple[bytes, bytes]]] | None:
        """(path, size, headers) of a variant row; rows are immutable, so this is cached by row."""
        cached = self._targets.get(row)
        if cached is not None:
            return cached
        key, size, content_type, created_at = row
        if not key:
            return None
        rep = ranges.Representation(size=size, etag=f'"{key_digest(key, size)}"', last_modified=_aware(created_at),
                                    content_type=safe_served_type(content_type))
        decision = ranges.evaluate("GET", {}, rep)
        headers = {"Content-Type": rep.content_type, "X-Content-Type-Options": "nosniff",
                   "Content-Security-Policy": SANDBOX_CSP, "Cache-Control": VARIANT_CACHE_CONTROL,
                   **decision.headers}
        target = (media_storage().path(key), size,
                  [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()])
        if len(self._targets) >= _CACHE_LIMIT:
            self._targets.clear()
        self._targets[row] = target
        return target

    def _middleware(self, secure: bool) -> list[tuple[bytes, bytes]] | None:
        """What the lean door's middleware adds to a variant's 200 (HSTS when secure, policies,
        X-Frame-Options), learned by running that chain once over a synthetic request."""
        if secure not in self._middleware_headers:
            self._middleware_headers[secure] = learn_middleware_headers(self.chain_for, secure)
        return self._middleware_headers[secure]


def learn_middleware_headers(chain_for: Callable, secure: bool) -> list[tuple[bytes, bytes]] | None:
    """The headers the middleware chain adds to a variant's 200, for a secure request or not."""
    view_headers = {"Content-Type": "image/webp", "X-Content-Type-Options": "nosniff",
                    "Content-Security-Policy": SANDBOX_CSP, "Cache-Control": VARIANT_CACHE_CONTROL}

    def view(request):
        response = HttpResponse(content_type="image/webp")
        for name, value in view_headers.items():
            response[name] = value
        return response

    host = next((h for h in settings.ALLOWED_HOSTS if "*" not in h and not h.startswith(".")), "localhost")
    scope = {"type": "http", "method": "GET", "path": "/m/x/3s/", "query_string": b"", "root_path": "",
             "scheme": "https" if secure else "http", "headers": [(b"host", host.encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 443 if secure else 80)}
    response = chain_for(view)(ASGIRequest(scope, io.BytesIO(b"")))
    if response.status_code != 200 or response.cookies:
        return None
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()
            if name not in view_headers and name != "Content-Length"]


def key_prefix(raw: str) -> str | None:
    """The lookup prefix of a raw `chip_...` key, as gallery.services.accounts.apikey_authenticate
    reads it; None for a key that cannot be one."""
    prefix = raw[len(KEY_PREFIX):].split("_", 1)[0]
    if len(prefix) != 8 or any(c not in "0123456789abcdef" for c in prefix):
        return None
    return prefix


def key_holder(raw: str, hashed: str | None, scopes, last_used, user_id, active: bool | None) -> uuid.UUID | None:
    """The user of an API key row (not revoked, found by its prefix) when `raw` is its secret, the
    user is active, a media scope is granted and the key's use was recorded less than a minute
    ago (else the full path records it); as gallery.services.accounts and gallery.auth decide."""
    if hashed is None or not active or not hmac.compare_digest(hashed, hashlib.sha256(raw.encode()).hexdigest()):
        return None
    last_used = _aware(last_used)
    if last_used is None or datetime.now(UTC) - last_used > timedelta(seconds=60):
        return None
    if isinstance(scopes, str):
        scopes = json.loads(scopes)
    if not {READ, READ_WRITE} & set(scopes):
        return None
    return user_id if isinstance(user_id, uuid.UUID) else uuid.UUID(user_id)


def _loads_user_by_pk(backend) -> bool:
    """Whether a session backend's get_user is a plain load by primary key (ModelBackend's, which
    also requires is_active, or mozilla-django-oidc's); DRF then requires is_active anyway."""
    get_user = type(backend).get_user
    return get_user in (ModelBackend.get_user, OIDCAuthenticationBackend.get_user)


def _trusted_proxy(scope: dict) -> bool:
    client = scope.get("client")
    return is_trusted_proxy(client[0] if client else None)

