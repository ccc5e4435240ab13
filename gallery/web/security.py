"""What the website believes and what it asks browsers to enforce.

The reverse proxy's X-Forwarded-For and X-Forwarded-Proto count only when the connection
comes from an address in FORWARDED_ALLOW_IPS; then the client address (REMOTE_ADDR) and
the scheme are the proxy's word, and from anyone else those headers are dropped. Secure
requests get Secure cookies (and HSTS from Django's SecurityMiddleware); HTML pages get the
Content-Security-Policy. The websocket's Origin must be the page's own origin (scheme, host
and port) or one of CSRF_TRUSTED_ORIGINS.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port, validate_host

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=8)
def _trusted_networks(spec: str) -> tuple[Network, ...] | None:
    """FORWARDED_ALLOW_IPS parsed; None for "*" (whoever connects)."""
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if "*" in items:
        return None
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def _address(text: str | None) -> Address | None:
    """An IP address from a peer or X-Forwarded-For hop, with or without its port."""
    text = (text or "").strip()
    if text.startswith("["):  # [v6]:port
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_trusted_proxy(peer: str | None) -> bool:
    networks = _trusted_networks(settings.FORWARDED_ALLOW_IPS)
    if networks is None:
        return bool(peer)
    address = _address(peer)
    return address is not None and any(address in network for network in networks)


def forwarded_client(peer: str, forwarded_for: str) -> str:
    """The client's address: the peer itself, or, when the peer is a trusted proxy, the
    nearest X-Forwarded-For hop no trusted proxy added ("*" trusts one hop: the last)."""
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    if not hops or not is_trusted_proxy(peer):
        return peer
    if _trusted_networks(settings.FORWARDED_ALLOW_IPS) is None:
        chosen = hops[-1]
    else:
        chosen = next((hop for hop in reversed(hops) if not is_trusted_proxy(hop)), hops[0])
    address = _address(chosen)
    # A proxy that appends garbage gets its own address used rather than a free-form key.
    return str(address) if address is not None else peer


def ProxyHeadersMiddleware(get_response: Callable[[HttpRequest], HttpResponse]):
    """REMOTE_ADDR becomes the client behind a trusted proxy; the proxy headers of anyone
    else are dropped, so SECURE_PROXY_SSL_HEADER can only be set by a trusted proxy."""

    def middleware(request: HttpRequest) -> HttpResponse:
        meta = request.META
        peer = meta.get("REMOTE_ADDR") or ""
        if is_trusted_proxy(peer):
            meta["REMOTE_ADDR"] = forwarded_client(peer, meta.get("HTTP_X_FORWARDED_FOR", ""))
        else:
            meta.pop("HTTP_X_FORWARDED_FOR", None)
            meta.pop("HTTP_X_FORWARDED_PROTO", None)
        return get_response(request)

    return middleware


def SecureResponseMiddleware(get_response: Callable[[HttpRequest], HttpResponse]):
    """Secure cookies on secure requests (the same server may also answer plain HTTP on a
    loopback port, so the flag cannot be a fixed setting), and the CSP on HTML pages."""

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if request.is_secure():
            for morsel in response.cookies.values():
                morsel["secure"] = True
        if response.get("Content-Type", "").startswith("text/html"):
            response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response

    return middleware


# --- Websocket origin ----------------------------------------------------------------------
Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_origin(text: str) -> Origin | None:
    """(scheme, host, port) of an http(s) origin, default ports filled in; None otherwise."""
    try:
        parts = urlsplit(text.strip())
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:  # a port out of range, a broken IPv6 literal
        return None
    if scheme not in _DEFAULT_PORTS or not host or parts.path not in ("", "/") or parts.query or parts.username:
        return None
    return scheme, host, port or _DEFAULT_PORTS[scheme]


def _matches_trusted(origin: Origin, pattern: str) -> bool:
    # CSRF_TRUSTED_ORIGINS may name subdomains as https://*.example.org, as Django allows.
    wildcard = "://*." in pattern
    trusted = parse_origin(pattern.replace("://*.", "://", 1) if wildcard else pattern)
    if trusted is None:
        return False
    scheme, host, port = origin
    if (scheme, port) != (trusted[0], trusted[2]):
        return False
    return host.endswith("." + trusted[1]) if wildcard else host == trusted[1]


def websocket_origin_allowed(scope: dict) -> bool:
    """The Origin of a websocket handshake is the page's own origin or a trusted one."""
    headers: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", []):
        headers.setdefault(name.lower(), value)
    origin_header = headers.get(b"origin", b"").decode("latin-1")
    host = headers.get(b"host", b"").decode("latin-1")
    origin = parse_origin(origin_header)
    if origin is None or not host:
        return False
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]  # as Django's own get_host()
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, allowed_hosts):
        return False
    scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
    client = scope.get("client")
    if client and is_trusted_proxy(client[0]):
        proto = headers.get(b"x-forwarded-proto", b"").decode("latin-1").strip().lower()
        if proto in ("https", "wss"):
            scheme = "https"
        elif proto in ("http", "ws"):
            scheme = "http"
    if origin == parse_origin(f"{scheme}://{host}"):
        return True
    return any(_matches_trusted(origin, pattern) for pattern in settings.CSRF_TRUSTED_ORIGINS)


class WebsocketOriginValidator:
    """ASGI middleware in front of the websocket routes: a handshake from another origin is
    refused (closed before accept, which the server answers with 403)."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not websocket_origin_allowed(scope):
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 4403})
            return None
        return await self.application(scope, receive, send)
