"""A read-through LRU disk cache of S3 blocks, for stream-mode delivery.

Objects are cached in aligned blocks of BLOCK_SIZE bytes so a ranged request (a video seek)
fetches only the blocks it touches, never the whole object. Blocks live under
`<DATA_DIR>/cache/blobs/<owner>/<xx>/<sha256(key, block)>`; a small SQLite index next to them
records size, owner and last use so several uvicorn workers share one budget:

- total bytes are capped (BLOB_CACHE_BYTES; 0 disables the cache), and so is each owner's
  share (BLOB_CACHE_USER_SHARE): an owner over their share evicts their own least recently
  used blocks first, so one user's video marathon cannot flush everyone else's thumbnails;
- a block is written to a temporary name and renamed into place, so a half-written block
  is never served, and its size is checked again when it is read;
- a missing block is fetched once: a striped flock(2) lock serialises the fetch across
  threads and processes, and whoever waited finds the block on disk;
- the index is rebuilt from the directory when it is missing or broken, and reconciled
  with it when a process starts, so the cache survives restarts and crashes.
Stored keys are immutable (a changed output is a new key), so entries are never invalidated.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.signals import setting_changed

logger = logging.getLogger(__name__)

BLOCK_SIZE = 4 * 1024 * 1024
LOCK_STRIPES = 256
# Writing the index on every hit would serialise readers on SQLite; LRU order to within
# this many seconds is precise enough.
TOUCH_INTERVAL = 10.0
# Counters are summed in the index across processes; each process adds its share this often.
COUNTER_FLUSH_SECONDS = 5.0
STALE_TEMP_SECONDS = 3600

Fetch = Callable[[int, int, BinaryIO], int]
"""fetch(first, last, out): write bytes first..last (inclusive) to out, return how many."""


@dataclass
class Counters:
    hits: int = 0
    misses: int = 0
    bypassed: int = 0
    fetched_bytes: int = 0
    served_bytes: int = 0


class BlobCache:
    """The cache rooted at `root`, holding at most `capacity` bytes, `user_share` per owner."""

    def __init__(self, root: Path, *, capacity: int, user_share: int, block_size: int = BLOCK_SIZE) -> None:
        self.root = Path(root)
        self.capacity = capacity
        self.user_share = min(user_share, capacity)
        self.block_size = block_size
        self.counters = Counters()
        self._local = threading.local()
        self._touched: dict[str, float] = {}
        self._counter_lock = threading.Lock()
        self._unflushed: dict[str, int] = {}
        self._flushed_at = time.monotonic()
        for sub in ("blobs", "tmp", "locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._open_index()
        self.reconcile()

    # --- Public interface ----------------------------------------------------------------
    def block_span(self, index: int, size: int) -> tuple[int, int]:
        """Inclusive byte span of block `index` of an object of `size` bytes."""
        first = index * self.block_size
        return first, min(size, first + self.block_size) - 1

    def open_block(self, *, key: str, index: int, size: int, owner: str, fetch: Fetch) -> BinaryIO | None:
        """An open file of block `index` of `key` (an object of `size` bytes), fetched on a miss.

        None when the block cannot be cached (larger than the owner's share): read it directly.
        """
        # The owner names a directory, so that a rebuilt index still knows whose block it is.
        owner = re.sub(r"[^A-Za-z0-9_-]", "_", owner) or "_"
        first, last = self.block_span(index, size)
        length = last - first + 1
        if length > self.user_share:
            self._count(bypassed=1)
            return None
        path = self._path(key, index, owner)
        handle = self._open_valid(path, length)
        if handle is not None:
            self._count(hits=1)
            self._touch(path)
            return handle
        with self._stripe_lock(path):
            # Someone else may have fetched it while we waited for the lock.
            handle = self._open_valid(path, length)
            if handle is not None:
                self._count(hits=1)
                self._touch(path)
                return handle
            self._count(misses=1)
            self._fill(path, first, last, owner, fetch)
            return self._open_valid(path, length)

    def stats(self) -> dict:
        """Hit/miss counts of all processes (theirs up to COUNTER_FLUSH_SECONDS late) and sizes."""
        self._flush_counters()
        db = self._db()
        entries, used = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries").fetchone()
        totals = {name: 0 for name in ("hits", "misses", "bypassed", "fetched_bytes")}
        totals.update((name, value) for name, value in db.execute("SELECT name, value FROM counters")
                      if name in totals)
        return {
            "enabled": True, **totals, "entries": entries, "bytes": used,
            "capacity_bytes": self.capacity, "user_share_bytes": self.user_share,
            "block_bytes": self.block_size,
        }

    def usage_by_owner(self) -> dict[str, int]:
        return dict(self._db().execute("SELECT owner, SUM(size) FROM entries GROUP BY owner"))

    def reconcile(self) -> None:
        """Make the index agree with the directory (rows for files only), then enforce the limits."""
        now = time.time()
        for tmp in (self.root / "tmp").iterdir():
            try:
                if now - tmp.stat().st_mtime > STALE_TEMP_SECONDS:
                    tmp.unlink()
            except FileNotFoundError:
                pass
        on_disk: dict[str, tuple[str, int, float]] = {}
        for dirpath, _dirs, files in os.walk(self.root / "blobs"):
            for name in files:
                full = Path(dirpath) / name
                try:
                    st = full.stat()
                except FileNotFoundError:
                    continue
                rel = str(full.relative_to(self.root))
                on_disk[rel] = (rel.split("/")[1], st.st_size, st.st_mtime)
        db = self._db()
        with _immediate(db):
            indexed = {row[0] for row in db.execute("SELECT path FROM entries")}
            db.executemany("DELETE FROM entries WHERE path = ?", [(p,) for p in indexed - on_disk.keys()])
            db.executemany(
                "INSERT INTO entries (path, owner, size, used) VALUES (?, ?, ?, ?)",
                [(p, *on_disk[p]) for p in on_disk.keys() - indexed],
            )
            doomed = self._evict(db, owner=None, incoming=0, keep=None)
        self._unlink(doomed)

    # --- Internals -----------------------------------------------------------------------
    def _path(self, key: str, index: int, owner: str) -> Path:
        digest = hashlib.sha256(f"{key}\0{self.block_size}\0{index}".encode()).hexdigest()
        return self.root / "blobs" / owner / digest[:2] / digest

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    def _open_valid(self, path: Path, length: int) -> BinaryIO | None:
        try:
            handle = open(path, "rb")  # noqa: SIM115 - the caller owns and closes it
        except FileNotFoundError:
            return None
        if os.fstat(handle.fileno()).st_size != length:
            # Cannot happen with atomic renames, unless someone edited the directory: refetch.
            handle.close()
            logger.warning("blob cache: %s has the wrong size, dropping it", path)
            self._forget(path)
            return None
        return handle

    def _fill(self, path: Path, first: int, last: int, owner: str, fetch: Fetch) -> None:
        length = last - first + 1
        tmp = self.root / "tmp" / f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "wb") as out:
                written = fetch(first, last, out)
            if written != length or tmp.stat().st_size != length:
                raise OSError(f"blob cache: fetched {written} bytes of {path.name}, expected {length}")
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        self._count(fetched_bytes=length)
        db = self._db()
        rel = self._rel(path)
        with _immediate(db):
            db.execute("INSERT OR REPLACE INTO entries (path, owner, size, used) VALUES (?, ?, ?, ?)",
                       (rel, owner, length, time.time()))
            doomed = self._evict(db, owner=owner, incoming=0, keep=rel)
        self._unlink(doomed)

    def _evict(self, db: sqlite3.Connection, *, owner: str | None, incoming: int, keep: str | None) -> list[str]:
        """Delete rows until the owner's share and the capacity hold; return the paths to unlink."""
        doomed: list[str] = []
        if owner is not None:
            (used,) = db.execute("SELECT COALESCE(SUM(size), 0) FROM entries WHERE owner = ?", (owner,)).fetchone()
            doomed += self._drop_lru(db, used + incoming - self.user_share, keep, owner)
        else:
            for who, used in db.execute("SELECT owner, SUM(size) FROM entries GROUP BY owner").fetchall():
                doomed += self._drop_lru(db, used - self.user_share, keep, who)
        (total,) = db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()
        doomed += self._drop_lru(db, total + incoming - self.capacity, keep, None)
        return doomed

    def _drop_lru(self, db: sqlite3.Connection, excess: int, keep: str | None, owner: str | None) -> list[str]:
        if excess <= 0:
            return []
        where, params = ("WHERE owner = ?", (owner,)) if owner is not None else ("", ())
        doomed = []
        for rel, size in db.execute(f"SELECT path, size FROM entries {where} ORDER BY used", params).fetchall():
            if excess <= 0:
                break
            if rel == keep:
                continue
            doomed.append(rel)
            excess -= size
        db.executemany("DELETE FROM entries WHERE path = ?", [(p,) for p in doomed])
        return doomed

    def _unlink(self, rels: list[str]) -> None:
        for rel in rels:
            (self.root / rel).unlink(missing_ok=True)
            self._touched.pop(rel, None)

    def _forget(self, path: Path) -> None:
        db = self._db()
        with _immediate(db):
            db.execute("DELETE FROM entries WHERE path = ?", (self._rel(path),))
        path.unlink(missing_ok=True)

    def _touch(self, path: Path) -> None:
        rel = self._rel(path)
        now = time.time()
        if now - self._touched.get(rel, 0.0) < TOUCH_INTERVAL:
            return
        if len(self._touched) > 100_000:  # entries evicted by other processes never pop out
            self._touched.clear()
        self._touched[rel] = now
        db = self._db()
        with _immediate(db):
            db.execute("UPDATE entries SET used = ? WHERE path = ?", (now, rel))

    def _count(self, **amounts: int) -> None:
        with self._counter_lock:
            for name, amount in amounts.items():
                setattr(self.counters, name, getattr(self.counters, name) + amount)
                self._unflushed[name] = self._unflushed.get(name, 0) + amount
            due = time.monotonic() - self._flushed_at >= COUNTER_FLUSH_SECONDS
        if due:
            self._flush_counters()

    def _flush_counters(self) -> None:
        """Add this process's counts since the last flush to the shared totals."""
        with self._counter_lock:
            pending, self._unflushed = self._unflushed, {}
            self._flushed_at = time.monotonic()
        if not pending:
            return
        db = self._db()
        with _immediate(db):
            db.executemany("INSERT INTO counters (name, value) VALUES (?, ?)"
                           " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value", pending.items())

    def _stripe_lock(self, path: Path) -> _FileLock:
        stripe = int(path.name[:2], 16) % LOCK_STRIPES
        return _FileLock(self.root / "locks" / f"{stripe:03d}.lock")

    # --- The index -----------------------------------------------------------------------
    def _index_path(self) -> Path:
        return self.root / "index.sqlite3"

    def _open_index(self) -> None:
        try:
            self._create_schema(self._db())
        except sqlite3.DatabaseError:
            # A broken index is only a cache of the directory: start a new one, reconcile fills it.
            logger.warning("blob cache: index %s is unreadable, rebuilding it", self._index_path())
            self._close_db()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self._index_path()}{suffix}").unlink(missing_ok=True)
            self._create_schema(self._db())

    @staticmethod
    def _create_schema(db: sqlite3.Connection) -> None:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS entries (path TEXT PRIMARY KEY, owner TEXT NOT NULL,"
                   " size INTEGER NOT NULL, used REAL NOT NULL)")
        db.execute("CREATE INDEX IF NOT EXISTS entries_used ON entries (used)")
        db.execute("CREATE INDEX IF NOT EXISTS entries_owner_used ON entries (owner, used)")
        db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")

    def _db(self) -> sqlite3.Connection:
        # One connection per thread: delivery reads blocks from asyncio's worker threads.
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self._index_path(), timeout=30, isolation_level=None)
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def _close_db(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


class _immediate:
    """A write transaction taken at once, so concurrent evictions do not interleave."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


class _FileLock:
    """An exclusive flock(2) on a lock file: excludes other threads and other processes alike."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> _FileLock:
        # flock locks belong to the open file description, so each holder opens its own.
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


# --- The process-wide cache --------------------------------------------------------------
_cache: BlobCache | None = None
_cache_lock = threading.Lock()


def get_cache() -> BlobCache | None:
    """The cache configured by settings, or None when BLOB_CACHE_BYTES is 0."""
    global _cache
    if settings.BLOB_CACHE_BYTES <= 0:
        return None
    with _cache_lock:
        if _cache is None:
            capacity = settings.BLOB_CACHE_BYTES
            _cache = BlobCache(Path(settings.BLOB_CACHE_DIR), capacity=capacity,
                               user_share=int(capacity * settings.BLOB_CACHE_USER_SHARE))
        return _cache


def cache_stats() -> dict:
    """Hit/miss counters of this process and the cache's size, for /health/."""
    cache = get_cache()
    if cache is None:
        return {"enabled": False}
    return cache.stats()


def _reset(*, setting: str, **kwargs) -> None:
    global _cache
    if setting.startswith("BLOB_CACHE") or setting == "DATA_DIR":
        with _cache_lock:
            _cache = None


setting_changed.connect(_reset)
