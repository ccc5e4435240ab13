"""Throttling of guesses: the one rule every door that checks a secret uses.

A scope (`login-account`, `login-address`; later vault unlock, share passwords) has a rule in
settings.THROTTLE_RULES: so many failures per fixed window of seconds. A caller asks
`throttle_check(scope, key)` before it checks the secret and refuses with 429 and Retry-After
while that is not 0, and calls `throttle_fail(scope, key)` after a wrong guess. When the
window ends the count starts over, so an owner is never locked out for good.

Counts live in Django's default cache: Redis when REDIS_URL is set (shared by every web
process and host, and incremented atomically), the process's memory otherwise.
"""

from __future__ import annotations

import hashlib
import math
import time

from django.conf import settings
from django.core.cache import cache


def now() -> float:
    """The clock of the windows (tests move it)."""
    return time.time()


def _window(scope: str, key: str) -> tuple[str, int, float]:
    """The cache key of the current window of (scope, key), the limit, and when the window ends."""
    limit, seconds = settings.THROTTLE_RULES[scope]
    moment = now()
    start = int(moment // seconds) * seconds
    # Keys are user input (a username, an address): hashed, so any length and character is fine.
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"throttle:{scope}:{digest}:{start}", limit, start + seconds


def throttle_check(scope: str, key: str) -> int:
    """Seconds until `key` may try again in `scope`; 0 when it may try now."""
    cache_key, limit, ends = _window(scope, key)
    if (cache.get(cache_key) or 0) < limit:
        return 0
    return max(1, math.ceil(ends - now()))


def throttle_fail(scope: str, key: str) -> None:
    """Count one failure of `key` in `scope`, in the current window."""
    cache_key, _, ends = _window(scope, key)
    timeout = max(1, math.ceil(ends - now())) + 1
    if cache.add(cache_key, 1, timeout=timeout):
        return
    try:
        cache.incr(cache_key)
    except ValueError:  # expired between add and incr: this failure starts the count again
        cache.add(cache_key, 1, timeout=timeout)
