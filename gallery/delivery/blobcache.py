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
- consecutive missing blocks (up to MAX_RUN_BLOCKS) come from one ranged GET: a GET costs a
  round trip, and S3 or MinIO answer the first byte in tens of milliseconds, so one GET per
  block made a cold read of a whole object about ten times slower than reading it without
  the cache. Each block is renamed into place, and its lock released, as soon as its last
  byte arrives, and handed to the reader before the next one is read from the GET;
- the index is rebuilt from the directory when it is missing or broken, and reconciled
  with it when a process starts, so the cache survives restarts and crashes.
Stored keys are immutable (a changed output is a new key), so entries are never invalidated.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import logging
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
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
# The longest run of missing blocks fetched with one GET. The run's locks are held until its
# blocks land, and they land at the pace of the reader's client (the GET is read as the
# blocks are sent), so this bounds how long another reader of a block further on may wait.
MAX_RUN_BLOCKS = 16

Fetch = Callable[[int, int], Iterator[bytes]]
"""fetch(first, last): bytes first..last (inclusive) from one ranged GET, in chunks."""


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

    def open_blocks(self, *, key: str, indexes: range, size: int, owner: str, fetch: Fetch) -> Iterator[BinaryIO | None]:
        """Open files of blocks `indexes` of `key`, in order; None for a block too big to cache.

        Consecutive missing blocks are fetched with one call of `fetch`. The caller reads each
        file before asking for the next (the fetch goes on meanwhile only as far as TCP buffers
        let it), and closes the iterator when it stops early, which ends the fetch.
        """
        # The owner names a directory, so that a rebuilt index still knows whose block it is.
        owner = re.sub(r"[^A-Za-z0-9_-]", "_", owner) or "_"
        index = indexes.start
        while index < indexes.stop:
            first, last = self.block_span(index, size)
            if last - first + 1 > self.user_share:
                self._count(bypassed=1)
                yield None
                index += 1
                continue
            handle = self._open_hit(self._path(key, index, owner), last - first + 1)
            if handle is not None:
                yield handle
                index += 1
                continue
            run = range(index, index + 1)
            for after in range(index + 1, min(indexes.stop, index + MAX_RUN_BLOCKS)):
                # Only blocks that fit the share come here; the last block of an object is the shortest.
                if self._path(key, after, owner).exists():
                    break
                run = range(index, after + 1)
            # It may stop short of the run, where someone else fetched a block meanwhile.
            for handle in self._fetch_run(key, run, size, owner, fetch):
                yield handle
                index += 1

    def _fetch_run(self, key: str, run: range, size: int, owner: str, fetch: Fetch) -> Iterator[BinaryIO | None]:
        """Blocks `run` (all missing when we looked) from one fetch, each yielded once on disk."""
        paths = {index: self._path(key, index, owner) for index in run}
        with _RunLocks(self, paths.values()) as locks:
            # Someone else may have fetched some of them while we waited for the locks: those are
            # hits, and the fetch starts at the first block still missing and stops before the
            # next one present (a run is one contiguous byte range).
            index = run.start
            while index < run.stop:
                first, last = self.block_span(index, size)
                handle = self._open_hit(paths[index], last - first + 1)
                if handle is None:
                    break
                locks.release(paths[index])
                yield handle
                index += 1
            stop = index
            while stop < run.stop and not paths[stop].exists():
                stop += 1
            if index == stop:
                return
            first, last = self.block_span(index, size)[0], self.block_span(stop - 1, size)[1]
            chunks = fetch(first, last)
            try:
                pending = b""
                for index in range(index, stop):
                    block_first, block_last = self.block_span(index, size)
                    pending = self._fill(paths[index], block_last - block_first + 1, owner, chunks, pending)
                    locks.release(paths[index])
                    self._count(misses=1)
                    # None only if other fills evicted it already: the caller then reads it directly.
                    yield self._open_valid(paths[index], block_last - block_first + 1)
            finally:
                close_iterator(chunks)

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

    def forget_blob(self, *, key: str, size: int, owner: str) -> None:
        """Drop every cached block of `key` (a blob that moved into the vault: its plaintext
        blocks must not outlive it here)."""
        for index in range(-(-size // self.block_size)):
            self._forget(self._path(key, index, owner))

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

    def _open_hit(self, path: Path, length: int) -> BinaryIO | None:
        handle = self._open_valid(path, length)
        if handle is not None:
            self._count(hits=1)
            self._touch(path)
        return handle

    def _fill(self, path: Path, length: int, owner: str, chunks: Iterator[bytes], pending: bytes) -> bytes:
        """Write the next `length` bytes of `chunks` (after `pending`) to the block at `path`.

        Returns what arrived beyond the block, for the next one.
        """
        tmp = self.root / "tmp" / f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "wb") as out:
                need = length
                for chunk in itertools.chain([pending], chunks):
                    out.write(chunk[:need])
                    pending = chunk[need:]
                    need -= min(need, len(chunk))
                    if need == 0:
                        break
            if need or tmp.stat().st_size != length:
                raise OSError(f"blob cache: fetched {length - need} bytes of {path.name}, expected {length}")
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
        return pending

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


class _RunLocks:
    """The stripe locks of a run of blocks, taken in stripe order (two runs cannot deadlock)
    and each released when the last block of the run that uses it has landed."""

    def __init__(self, cache: BlobCache, paths) -> None:
        self.stripe_of = {path: cache._stripe_lock(path) for path in paths}
        self.pending: dict[Path, int] = {}
        for lock in self.stripe_of.values():
            self.pending[lock.path] = self.pending.get(lock.path, 0) + 1
        # One lock per stripe: flock on a second descriptor of the same file would wait for the first.
        self.locks = {path: _FileLock(path) for path in sorted(self.pending)}

    def __enter__(self) -> _RunLocks:
        try:
            for lock in self.locks.values():
                lock.__enter__()
        except BaseException:
            self.__exit__()
            raise
        return self

    def release(self, block: Path) -> None:
        stripe = self.stripe_of.pop(block).path
        self.pending[stripe] -= 1
        if self.pending[stripe] == 0:
            self.locks.pop(stripe).__exit__(None, None, None)

    def __exit__(self, *exc: object) -> None:
        for lock in self.locks.values():
            lock.__exit__(None, None, None)
        self.locks.clear()


def close_iterator(chunks: Iterator[bytes]) -> None:
    """Close a generator of chunks (ends the fetch or read behind it); other iterators need nothing."""
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


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
        if self.fd < 0:
            return
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = -1


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


def forget_cached(*, blobs: list[tuple[str, int]], owner: str) -> None:
    """Forget the cached blocks of these (key, size) blobs of `owner`, if the cache is on."""
    cache = get_cache()
    if cache is not None:
        for key, size in blobs:
            cache.forget_blob(key=key, size=size, owner=owner)


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
