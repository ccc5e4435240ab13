"""The vault's costs: decrypting delivery against raw AES-256-GCM, range TTFB against a
library item's, and unlock latency at the default Argon2id parameters.

    .venv/bin/python bench/vault.py [--mib 1024] [--ranges 60] [--runs 3]

Starts, in a temporary CHIPMUNK_DATA_DIR under bench/.work/ (git-ignored): a SQLite
database with one user whose vault is set up with the default Argon2id parameters
(config/settings.py), the same random file (bench/stream.py's 1 GiB file, or its first
--mib MiB) once as a library original (a hard link) and once as a vault item (encrypted
here with gallery.vault), and uvicorn serving config.asgi with one worker. Then, --runs
times each:
- whole: the vault original streamed by curl (decrypted by the server), against raw
  AES-256-GCM decryption of the same blob's chunks with `cryptography` in this process
  (reading the blob from the page cache, no HTTP): the ratio (goal >= 0.5); the library
  item streamed the same way is printed for context (what HTTP itself costs here);
- ranges: --ranges random 1 MiB ranges of the library item and of the vault item, asked
  alternately (a new connection each, so each pair sees the same load): median time to
  first byte of each and the ratio vault/library (goal <= 2); then a third of them again
  on one keep-alive connection for the vault's ranges throughput;
- unlock: POST /api/v1/vault/unlock with the passphrase (Argon2id at the defaults).
Prints each run, then median [min-max] of every figure with the reference's own. The
machine is shared: the load average is printed with the results, and figures move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream import (  # noqa: E402 (bench/stream.py: the 1 GiB file, servers and clients)
    BIG,
    MIB,
    ROOT,
    WORK,
    curl_whole,
    free_port,
    make_big_file,
    manage,
    random_ranges,
    uvicorn,
)

PASSPHRASE = "benchmark passphrase"
SETUP = """
import json, os
from gallery.models import Media, User, VaultItem
from gallery.services.accounts import apikey_create
from gallery.services import vault as vault_service
from gallery.services.vault_media import SEALED_FIELDS
from gallery.vault import blobs, crypto, keys
size, source = %d, %r
user = User.objects.create_user(username="bench", password=None)
vault_service.vault_setup(user=user, passphrase=%r)
_, vault_key = vault_service._open(user, passphrase=%r)
unlocked = keys.Unlocked(user_id=user.pk, key=vault_key, until=0)
library = Media.objects.create(owner=user, original_filename="big.bin", content_type="application/octet-stream",
                               size=size, sha256="", status=Media.Status.READY, original_key="bench/big.bin")
media = Media(owner=user, size=size, sha256="", status=Media.Status.READY, in_vault=True, **SEALED_FIELDS)
file_key = crypto.new_key()
media.original_key = blobs.original_key(user_id=user.pk, media_id=media.pk)
with open(source, "rb") as fh:
    pieces = iter(lambda: fh.read(min(blobs.READ_CHUNK, size - fh.tell())), b"")
    blobs.encrypt_to(media.original_key, file_key=file_key, media_id=media.pk, level="0", size=size, pieces=pieces)
media.save()
meta = {"name": "big.bin", "content_type": "application/octet-stream"}
VaultItem.objects.create(media=media, wrapped_key=vault_service.vault_file_key_wrap(
    unlocked=unlocked, media_id=media.pk, file_key=file_key),
    sealed=blobs.meta_seal(file_key=file_key, media_id=media.pk, meta=meta))
_, raw = apikey_create(user=user, name="bench", scopes=["media.read", "media.read_write"])
print("JSON" + json.dumps({"library": library.token, "vault": media.token, "apikey": raw,
                           "vault_key_path": media.original_key, "file_key": file_key.hex(),
                           "media_id": str(media.pk)}))
"""


def raw_decrypt(path: Path, file_key: bytes, media_id: str) -> float:
    """Bytes per second of decrypting the blob's chunks with AES-256-GCM, nothing else."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    sys.path.insert(0, str(ROOT))
    from gallery.vault import crypto

    file_id = crypto.blob_file_id(media_id, "0")
    aead = AESGCM(file_key)
    started = time.perf_counter()
    with open(path, "rb") as fh:
        header = crypto.header_parse(fh.read(crypto.HEADER_SIZE))
        for index in range(header.chunks):
            sealed = fh.read(header.chunk_span(index)[1])
            aead.decrypt(crypto.chunk_nonce(header.prefix, index), sealed,
                         crypto.chunk_aad(file_id, index, index == header.chunks - 1))
    return header.size / (time.perf_counter() - started)


def interleaved_ranges(port: int, library: str, vault: str, auth: dict[str, str],
                       offsets: list[int]) -> tuple[float, float, float]:
    """Median TTFB of 1 MiB ranges of the library item and of the vault item, asked
    alternately (each pair sees the same load), and the vault's ranges throughput."""
    lib, vlt = [], []
    for offset in offsets:
        lib.append(random_ranges(port, library, auth, [offset])[0])
        ttfb, _ = random_ranges(port, vault, auth, [offset])
        vlt.append(ttfb)
    started = time.perf_counter()
    random_ranges(port, vault, auth, offsets[: max(1, len(offsets) // 3)])
    rate = max(1, len(offsets) // 3) * MIB / (time.perf_counter() - started)
    return statistics.median(lib), statistics.median(vlt), rate


def unlock(port: int, auth: dict[str, str]) -> float:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    conn.request("POST", "/api/v1/vault/unlock", body=json.dumps({"passphrase": PASSPHRASE}),
                 headers={**auth, "Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    if response.status != 200:
        raise SystemExit(f"unlock answered {response.status}")
    return elapsed


def summary(values: list[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024, help="size of the file in MiB (at most 1024)")
    parser.add_argument("--ranges", type=int, default=60, help="random 1 MiB ranges per item and run")
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    size = min(opts.mib, 1024) * MIB
    make_big_file()
    data_dir = Path(tempfile.mkdtemp(prefix="vault-", dir=WORK))
    try:
        media_root = data_dir / "media"
        (media_root / "bench").mkdir(parents=True)
        source = BIG
        if size != BIG.stat().st_size:
            source = data_dir / "source.bin"
            with open(BIG, "rb") as src, open(source, "wb") as dst:
                dst.write(src.read(size))
        os.link(source, media_root / "bench" / "big.bin")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "S3_", "BLOB_CACHE",
                                                                        "REDIS_URL", "VAULT_"))}
        env.update(CHIPMUNK_DATA_DIR=str(data_dir), DELIVERY_MODE="stream", STORAGE_BACKEND="local",
                   LOG_LEVEL="warning", DEBUG="false", RUN_WORKER="false", JOBS_MODE="queue")
        manage(env, "migrate", "--noinput")
        print(f"encrypting {size // MIB} MiB into the vault (once)...", flush=True)
        out = manage(env, "shell", "-c", SETUP % (size, str(source), PASSPHRASE, PASSPHRASE))
        rows = json.loads(out.split("JSON", 1)[1])
        os.sync()  # the new blob's writeback is the set-up's cost, not the first run's
        blob = media_root / rows["vault_key_path"]
        auth = {"Authorization": f"Bearer {rows['apikey']}"}
        vault_path, library_path = f"/m/{rows['vault']}/0/", f"/m/{rows['library']}/0/"
        rng = random.Random(7)
        port = free_port()
        figures: dict[str, list[float]] = {k: [] for k in ("raw", "whole", "whole_ratio", "vault_ttfb", "lib_ttfb",
                                                           "ttfb_ratio", "vault_ranges", "unlock",
                                                           "library_whole")}
        with uvicorn(env, port):
            unlock(port, auth)  # the first one also warms the process
            for run in range(1, opts.runs + 1):
                figures["unlock"].append(unlock(port, auth))
                figures["raw"].append(raw_decrypt(blob, bytes.fromhex(rows["file_key"]), rows["media_id"]))
                _, rate = curl_whole(f"http://127.0.0.1:{port}{vault_path}", auth, size)
                figures["whole"].append(rate)
                figures["library_whole"].append(curl_whole(f"http://127.0.0.1:{port}{library_path}", auth, size)[1])
                figures["whole_ratio"].append(rate / figures["raw"][-1])
                offsets = [rng.randrange(0, size - MIB) for _ in range(opts.ranges)]
                lib_ttfb, vault_ttfb, vault_rate = interleaved_ranges(port, library_path, vault_path, auth, offsets)
                figures["lib_ttfb"].append(lib_ttfb)
                figures["vault_ttfb"].append(vault_ttfb)
                figures["ttfb_ratio"].append(vault_ttfb / lib_ttfb)
                figures["vault_ranges"].append(vault_rate)
                print(f"run {run}: raw AES-GCM {figures['raw'][-1] / 1e6:.0f} MB/s, vault whole {rate / 1e6:.0f} MB/s "
                      f"(ratio {figures['whole_ratio'][-1]:.2f}); 1 MiB ranges TTFB vault {vault_ttfb * 1000:.2f} ms, "
                      f"library {lib_ttfb * 1000:.2f} ms (ratio {figures['ttfb_ratio'][-1]:.2f}), vault ranges "
                      f"{vault_rate / 1e6:.0f} MB/s; unlock {figures['unlock'][-1]:.3f} s", flush=True)
        load = os.getloadavg()
        mb = [v / 1e6 for v in figures["raw"]], [v / 1e6 for v in figures["whole"]]
        print(f"\n{size // MIB} MiB, {opts.runs} runs, median [min-max]; load average {load[0]:.1f} {load[1]:.1f} "
              f"{load[2]:.1f} on {os.cpu_count()} cores (shared machine: figures move with the load)")
        print(f"reference, raw AES-256-GCM decryption in one process: {summary(mb[0], '{:.0f}')} MB/s")
        print(f"vault original streamed whole (curl):                {summary(mb[1], '{:.0f}')} MB/s")
        print(f"ratio whole / raw:                                   {summary(figures['whole_ratio'])} (goal >= 0.5)")
        print(f"(context) the library item streamed whole (curl):    "
              f"{summary([v / 1e6 for v in figures['library_whole']], '{:.0f}')} MB/s")
        print(f"vault 1 MiB ranges:                                  "
              f"{summary([v / 1e6 for v in figures['vault_ranges']], '{:.0f}')} MB/s")
        print(f"median TTFB of 1 MiB ranges, library item:           "
              f"{summary([v * 1000 for v in figures['lib_ttfb']])} ms")
        print(f"median TTFB of 1 MiB ranges, vault item:             "
              f"{summary([v * 1000 for v in figures['vault_ttfb']])} ms")
        print(f"ratio TTFB vault / library:                          {summary(figures['ttfb_ratio'])} (goal <= 2)")
        print(f"unlock at the defaults (Argon2id, config/settings.py), over HTTP: "
              f"{summary(figures['unlock'], '{:.3f}')} s (aim 0.3-1 s)")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
