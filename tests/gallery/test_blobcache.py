"""gallery.delivery.blobcache: LRU with per-owner shares, single fetch under concurrency, crash safety."""

from __future__ import annotations

import multiprocessing
import threading
import time
import zlib
from contextlib import closing
from pathlib import Path

import pytest

from gallery.delivery import blobcache
from gallery.delivery.blobcache import BlobCache

BLOCK = 1000


def open_block(cache: blobcache.BlobCache, *, key: str, index: int, size: int, owner: str, fetch):
    """One block through the cache's only door, open_blocks."""
    with closing(cache.open_blocks(key=key, indexes=range(index, index + 1), size=size, owner=owner,
                                   fetch=fetch)) as blocks:
        return next(blocks)


def usage_by_owner(cache: blobcache.BlobCache) -> dict[str, int]:
    """Bytes cached per owner, read from the cache's index."""
    return dict(cache._db().execute("SELECT owner, SUM(size) FROM entries GROUP BY owner"))


@pytest.fixture(autouse=True)
def _touch_every_time(monkeypatch):
    # LRU order is what these tests check; the production throttle would hide touches.
    monkeypatch.setattr(blobcache, "TOUCH_INTERVAL", 0.0)


class Clock:
    """The wall clock the cache stamps its entries with, moved by the test, not by sleeping.

    It stands in for the `time` module in blobcache only; everything but time() is the real one.
    """

    def __init__(self) -> None:
        self.now = time.time()

    def __getattr__(self, name: str):
        return getattr(time, name)

    def time(self) -> float:
        return self.now

    def tick(self, seconds: float = 1.0) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(blobcache, "time", clock)
    return clock


class Origin:
    """A fake remote store of objects made of a repeated byte, counting what it is asked."""

    def __init__(self) -> None:
        self.requests: list[tuple[int, int]] = []

    def fetch_for(self, key: str, chunk: int = 300):
        def fetch(first: int, last: int):
            self.requests.append((first, last))
            data = content(key)[first:last + 1]
            # Chunks that do not line up with blocks, as S3 bodies do not.
            for at in range(0, len(data), chunk):
                yield data[at:at + chunk]
        return fetch


def content(key: str, size: int = 10 * BLOCK) -> bytes:
    seed = zlib.crc32(key.encode())
    return bytes((seed + i) % 251 for i in range(size))


def read(cache: BlobCache, origin: Origin, key: str, index: int = 0, owner: str = "alice",
         size: int = 10 * BLOCK) -> bytes:
    handle = open_block(cache, key=key, index=index, size=size, owner=owner, fetch=origin.fetch_for(key))
    assert handle is not None
    with handle:
        return handle.read()


def new_cache(root: Path, capacity: int = 4 * BLOCK, share: float = 1.0) -> BlobCache:
    return BlobCache(root, capacity=capacity, user_share=int(capacity * share), block_size=BLOCK)


def cached_keys(cache: BlobCache) -> set[str]:
    return {row[0] for row in cache._db().execute("SELECT path FROM entries")}


def test_miss_then_hit(tmp_path):
    cache, origin = new_cache(tmp_path), Origin()
    assert read(cache, origin, "a", index=3) == content("a")[3 * BLOCK:4 * BLOCK]
    assert read(cache, origin, "a", index=3) == content("a")[3 * BLOCK:4 * BLOCK]
    assert origin.requests == [(3 * BLOCK, 4 * BLOCK - 1)]
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["entries"], stats["bytes"]) == (1, 1, 1, BLOCK)


def test_counts_are_shared_by_every_process_using_the_cache(tmp_path, monkeypatch):
    # Two instances on one directory stand for two web processes; with no flush delay each
    # count reaches the shared totals at once.
    from gallery.delivery import blobcache

    monkeypatch.setattr(blobcache, "COUNTER_FLUSH_SECONDS", 0)
    first, second, origin = new_cache(tmp_path), new_cache(tmp_path), Origin()
    read(first, origin, "a")
    read(second, origin, "a")
    read(second, origin, "a")
    for cache in (first, second):
        stats = cache.stats()
        assert (stats["hits"], stats["misses"]) == (2, 1)


def test_last_block_is_short(tmp_path):
    cache, origin = new_cache(tmp_path), Origin()
    size = 2 * BLOCK + 7
    handle = open_block(cache, key="k", index=2, size=size, owner="alice", fetch=origin.fetch_for("k"))
    assert handle.read() == content("k")[2 * BLOCK:size]
    handle.close()
    assert origin.requests == [(2 * BLOCK, size - 1)]


def test_least_recently_used_goes_first(tmp_path, clock):
    cache, origin = new_cache(tmp_path, capacity=3 * BLOCK), Origin()
    for key in ("a", "b", "c"):
        read(cache, origin, key)
        clock.tick()
    read(cache, origin, "a")  # a is now more recent than b
    clock.tick()
    read(cache, origin, "d")
    origin.requests.clear()
    for key in ("a", "c", "d"):
        read(cache, origin, key)
    assert origin.requests == []
    read(cache, origin, "b")
    assert origin.requests == [(0, BLOCK - 1)]
    assert cache.stats()["bytes"] <= 3 * BLOCK


def test_an_owner_over_their_share_evicts_their_own_blocks(tmp_path, clock):
    cache, origin = new_cache(tmp_path, capacity=8 * BLOCK, share=0.5), Origin()
    for i in range(3):
        read(cache, origin, f"bob-{i}", owner="bob")
        clock.tick()
    for i in range(10):  # alice streams a long video, way past her share
        read(cache, origin, f"alice-{i}", owner="alice")
        clock.tick()
    usage = usage_by_owner(cache)
    assert usage == {"alice": 4 * BLOCK, "bob": 3 * BLOCK}
    origin.requests.clear()
    for i in range(3):
        read(cache, origin, f"bob-{i}", owner="bob")
    for i in range(6, 10):
        read(cache, origin, f"alice-{i}", owner="alice")
    assert origin.requests == []  # bob kept everything, alice her four latest


def test_blocks_larger_than_a_share_are_not_cached(tmp_path):
    cache, origin = new_cache(tmp_path, capacity=2 * BLOCK, share=0.25), Origin()
    assert open_block(cache, key="x", index=0, size=10 * BLOCK, owner="alice", fetch=origin.fetch_for("x")) is None
    assert origin.requests == [] and cache.stats()["bypassed"] == 1


def test_concurrent_misses_fetch_once_across_threads_and_processes(tmp_path):
    log = tmp_path / "fetches.log"
    # spawn, not fork: other tests leave threads (moto, uvicorn) that a fork would copy mid-lock.
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(6)  # everyone asks at the same moment, once the processes are up
    procs = [spawn.Process(target=_slow_reader, args=(tmp_path, log, start)) for _ in range(2)]
    threads = [threading.Thread(target=_slow_reader, args=(tmp_path, log, start)) for _ in range(4)]
    for worker in procs + threads:
        worker.start()
    for worker in threads:
        worker.join(30)
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    assert log.read_text().count("fetch\n") == 1
    assert (tmp_path / "ok").read_text().count("ok\n") == 6


def _slow_reader(root: Path, log: Path, start) -> None:
    cache = new_cache(root / "cache")
    start.wait(30)

    def fetch(first: int, last: int):
        with open(log, "a") as f:
            f.write("fetch\n")
        time.sleep(0.3)
        yield content("shared")[first:last + 1]

    handle = open_block(cache, key="shared", index=1, size=10 * BLOCK, owner="alice", fetch=fetch)
    assert handle.read() == content("shared")[BLOCK:2 * BLOCK]
    handle.close()
    with open(root / "ok", "a") as f:
        f.write("ok\n")


def read_all(cache: BlobCache, origin: Origin, key: str, indexes: range, owner: str = "alice") -> list[bytes]:
    out = []
    for handle in cache.open_blocks(key=key, indexes=indexes, size=10 * BLOCK, owner=owner,
                                    fetch=origin.fetch_for(key)):
        with handle:
            out.append(handle.read())
    return out


def test_a_cold_run_of_blocks_is_one_fetch(tmp_path):
    cache, origin = new_cache(tmp_path), Origin()
    assert read_all(cache, origin, "a", range(1, 4)) == [content("a")[i * BLOCK:(i + 1) * BLOCK] for i in (1, 2, 3)]
    assert origin.requests == [(BLOCK, 4 * BLOCK - 1)]
    stats = cache.stats()
    assert (stats["misses"], stats["entries"], stats["fetched_bytes"]) == (3, 3, 3 * BLOCK)
    origin.requests.clear()
    read_all(cache, origin, "a", range(1, 4))
    assert origin.requests == [] and cache.stats()["hits"] == 3


def test_a_run_stops_at_a_cached_block_and_is_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(blobcache, "MAX_RUN_BLOCKS", 3)
    cache, origin = new_cache(tmp_path, capacity=10 * BLOCK), Origin()
    read(cache, origin, "a", index=2)
    origin.requests.clear()
    blocks = read_all(cache, origin, "a", range(0, 10))
    assert b"".join(blocks) == content("a")
    # 0-1, then 2 from disk, then runs of at most three blocks.
    assert origin.requests == [(0, 2 * BLOCK - 1), (3 * BLOCK, 6 * BLOCK - 1), (6 * BLOCK, 9 * BLOCK - 1),
                               (9 * BLOCK, 10 * BLOCK - 1)]


def test_each_block_of_a_run_is_readable_as_soon_as_it_lands(tmp_path):
    # A reads blocks 0-2 through one slow fetch that stalls before block 2; B wants block 1
    # meanwhile: it must wait for A's fetch (not fetch again) and get the block before A's
    # fetch is over.
    cache, requests = new_cache(tmp_path), []
    data = content("v")
    stall, a_has_block_1, results = threading.Event(), threading.Event(), {}

    def slow_fetch(first: int, last: int):
        requests.append((first, last))
        yield data[0:BLOCK]
        time.sleep(0.3)  # B asks for block 1 while it is in flight
        yield data[BLOCK:2 * BLOCK]
        stall.wait(10)
        yield data[2 * BLOCK:3 * BLOCK]

    def reader_a():
        got = []
        for handle in cache.open_blocks(key="v", indexes=range(0, 3), size=10 * BLOCK, owner="alice",
                                        fetch=slow_fetch):
            with handle:
                got.append(handle.read())
            if len(got) == 1:
                reader_b.start()
            if len(got) == 2:
                a_has_block_1.set()
        results["a"] = got

    def read_b():
        handle = open_block(cache, key="v", index=1, size=10 * BLOCK, owner="alice", fetch=slow_fetch)
        with handle:
            results["b"] = handle.read()

    reader_b = threading.Thread(target=read_b)
    a = threading.Thread(target=reader_a)
    a.start()
    assert a_has_block_1.wait(10)
    reader_b.join(10)
    assert results["b"] == data[BLOCK:2 * BLOCK]  # while A's fetch is still stalled
    assert "a" not in results
    stall.set()
    a.join(10)
    assert results["a"] == [data[i * BLOCK:(i + 1) * BLOCK] for i in range(3)]
    assert requests == [(0, 3 * BLOCK - 1)]


def test_a_reader_that_stops_early_ends_the_fetch_and_frees_the_rest(tmp_path):
    cache, origin, closed = new_cache(tmp_path), Origin(), []

    def fetch(first: int, last: int):
        try:
            yield from origin.fetch_for("a")(first, last)
        finally:
            closed.append((first, last))

    blocks = cache.open_blocks(key="a", indexes=range(0, 4), size=10 * BLOCK, owner="alice", fetch=fetch)
    with next(blocks) as handle:
        assert handle.read() == content("a")[:BLOCK]
    blocks.close()
    assert closed == [(0, 4 * BLOCK - 1)]
    assert len(cached_keys(cache)) == 1  # block 0 only
    assert list((tmp_path / "tmp").iterdir()) == []
    # The locks of blocks 1-3 went with it: another reader fetches them without waiting.
    origin.requests.clear()
    assert read(cache, origin, "a", index=2) == content("a")[2 * BLOCK:3 * BLOCK]
    assert origin.requests == [(2 * BLOCK, 3 * BLOCK - 1)]


def test_a_failed_or_short_fetch_leaves_nothing_behind(tmp_path):
    cache, origin = new_cache(tmp_path), Origin()

    def broken(first, last):
        yield b"x" * 10
        raise ConnectionError("S3 went away")

    def short(first, last):
        yield b"x" * 10

    with pytest.raises(ConnectionError):
        open_block(cache, key="a", index=0, size=10 * BLOCK, owner="alice", fetch=broken)
    with pytest.raises(OSError):
        open_block(cache, key="a", index=0, size=10 * BLOCK, owner="alice", fetch=short)
    assert list((tmp_path / "tmp").iterdir()) == []
    assert [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == []
    assert cached_keys(cache) == set()
    assert read(cache, origin, "a") == content("a")[:BLOCK]


def test_a_block_of_the_wrong_size_is_refetched(tmp_path):
    cache, origin = new_cache(tmp_path), Origin()
    read(cache, origin, "a")
    [path] = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    path.write_bytes(b"truncated")
    assert read(cache, origin, "a") == content("a")[:BLOCK]
    assert len(origin.requests) == 2


def test_survives_a_restart_and_rebuilds_a_lost_or_broken_index(tmp_path):
    origin = Origin()
    cache = new_cache(tmp_path)
    read(cache, origin, "a", owner="alice")
    read(cache, origin, "b", owner="bob")
    cache._close_db()

    restarted = new_cache(tmp_path)
    read(restarted, origin, "a", owner="alice")
    assert len(origin.requests) == 2
    restarted._close_db()

    (tmp_path / "index.sqlite3").unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{tmp_path / 'index.sqlite3'}{suffix}").unlink(missing_ok=True)
    rebuilt = new_cache(tmp_path)
    assert usage_by_owner(rebuilt) == {"alice": BLOCK, "bob": BLOCK}
    rebuilt._close_db()

    (tmp_path / "index.sqlite3").write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        Path(f"{tmp_path / 'index.sqlite3'}{suffix}").unlink(missing_ok=True)
    repaired = new_cache(tmp_path)
    assert usage_by_owner(repaired) == {"alice": BLOCK, "bob": BLOCK}
    read(repaired, origin, "b", owner="bob")
    assert len(origin.requests) == 2


def test_a_smaller_capacity_at_restart_evicts_and_stale_temp_files_go(tmp_path, monkeypatch, clock):
    cache, origin = new_cache(tmp_path, capacity=4 * BLOCK), Origin()
    for key in "abcd":
        read(cache, origin, key)
        clock.tick()
    stale = tmp_path / "tmp" / "half-written.123.abc"
    stale.write_bytes(b"x")
    monkeypatch.setattr(blobcache, "STALE_TEMP_SECONDS", -1)
    cache._close_db()
    smaller = new_cache(tmp_path, capacity=2 * BLOCK)
    assert smaller.stats()["bytes"] == 2 * BLOCK
    assert not stale.exists()
    origin.requests.clear()
    read(smaller, origin, "c")
    read(smaller, origin, "d")
    assert origin.requests == []


def test_cache_stats_follows_settings(settings, tmp_path):
    settings.BLOB_CACHE_BYTES = 0
    assert blobcache.cache_stats() == {"enabled": False}
    settings.BLOB_CACHE_DIR = tmp_path / "c"
    settings.BLOB_CACHE_BYTES = 10 * BLOCK
    settings.BLOB_CACHE_USER_SHARE = 0.3
    stats = blobcache.cache_stats()
    assert stats["enabled"] and stats["capacity_bytes"] == 10 * BLOCK and stats["user_share_bytes"] == 3 * BLOCK
    assert (tmp_path / "c" / "index.sqlite3").exists()
