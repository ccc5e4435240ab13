"""Benchmark: gallery.processing.images.render_variants against a pyvips thumbnail + cascade reference.

Run from the project root:  .venv/bin/python bench/variants.py [--runs 7]

Makes its own ~12 MP JPEG (a corpus photo upscaled to 4000x3000 with noise, quality 90),
renders all levels with both implementations in the same process, and prints the median
time of each and the ratio ours/pyvips. Both produce the same levels, same WebP quality
and effort, metadata stripped, colour converted to sRGB. Runs are interleaved so that
thermal or cache drift hits both sides alike.

Ours encodes the WebPs on a small thread pool (libwebp releases the GIL). The pyvips
reference is timed as specified (thumbnail + cascade, encodes in turn) and again with the
same thread pool, so the second ratio compares like with like. pyvips's operation cache
is off, or every repeat after the first would be nearly free.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyvips
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gallery.processing.images import _QUALITY, _WEBP_METHOD, LEVELS, SQUARE_LEVELS, render_variants  # noqa: E402

CORPUS_PHOTO = ROOT.parent / "shared" / "corpus" / "jpg" / "gps" / "DSCN0010.jpg"


def make_jpeg(path: Path, *, orientation: int = 1, size: tuple[int, int] = (4000, 3000)) -> None:
    """A camera-like 12 MP JPEG: real picture content plus sensor-like noise, q 90."""
    if CORPUS_PHOTO.exists():
        base = Image.open(CORPUS_PHOTO).convert("RGB").resize(size, Image.Resampling.BICUBIC)
    else:
        x = np.linspace(0, 255, size[0], dtype=np.float32)
        y = np.linspace(0, 255, size[1], dtype=np.float32)[:, None]
        base = Image.fromarray(np.dstack([x + 0 * y, y + 0 * x, (x + y) / 2]).astype(np.uint8))
    rng = np.random.default_rng(42)
    pixels = np.asarray(base, dtype=np.int16)
    pixels = pixels + rng.integers(-12, 13, size=pixels.shape, dtype=np.int16)
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, "JPEG", quality=90, exif=exif.tobytes())


def pyvips_variants(path: str, pool: ThreadPoolExecutor | None = None) -> list[tuple[str, int, int, bytes]]:
    """Reference: shrink-on-load thumbnail to 1080 (autorotates, imports ICC), then a cascade.

    With `pool`, WebP encodes run on its threads as ours do, for a like-for-like figure.
    """
    jobs: list[tuple[str, pyvips.Image]] = []
    top = pyvips.Image.thumbnail(path, max(LEVELS.values()), size="down").copy_memory()
    current = top
    for level, side in sorted(LEVELS.items(), key=lambda kv: -kv[1]):
        if max(current.width, current.height) > side:
            # copy_memory: without it every level would re-run the whole lazy pipeline.
            current = current.thumbnail_image(side, size="down").copy_memory()
        jobs.append((level, current))
        if pool is not None:
            jobs[-1] = (level, pool.submit(_vips_webp, current, level))
    current = top
    for level, side in sorted(SQUARE_LEVELS.items(), key=lambda kv: -kv[1]):
        current = current.thumbnail_image(side, height=side, crop="centre", size="down").copy_memory()
        jobs.append((level, current))
        if pool is not None:
            jobs[-1] = (level, pool.submit(_vips_webp, current, level))
    if pool is not None:
        return [(level, 0, 0, job.result()) for level, job in jobs]
    return [(level, job.width, job.height, _vips_webp(job, level)) for level, job in jobs]


def _vips_webp(img: pyvips.Image, level: str) -> bytes:
    return img.webpsave_buffer(Q=_QUALITY[level], effort=_WEBP_METHOD, keep="none")


def pyvips_variants_threaded(path: str) -> list[tuple[str, int, int, bytes]]:
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        return pyvips_variants(path, pool)


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    # The operation cache would make every repeat after the first nearly free.
    pyvips.cache_set_max(0)

    with tempfile.TemporaryDirectory() as tmp:
        for orientation in (1, 6):
            path = Path(tmp) / f"bench_{orientation}.jpg"
            make_jpeg(path, orientation=orientation)
            mb = os.path.getsize(path) / 1e6
            # Warm up both (imports, codec tables, first-call allocations).
            info, ours_out = render_variants(path)
            ref_out = pyvips_variants(str(path))
            ours_sizes = sorted((v.level, v.width, v.height) for v in ours_out)
            ref_sizes = sorted((lv, w, h) for lv, w, h, _ in ref_out)
            pyvips_variants_threaded(str(path))
            ours_t, ref_t, ref2_t = [], [], []
            for _ in range(args.runs):
                ours_t.append(timed(render_variants, path))
                ref_t.append(timed(pyvips_variants, str(path)))
                ref2_t.append(timed(pyvips_variants_threaded, str(path)))
            ours_m, ref_m = statistics.median(ours_t), statistics.median(ref_t)
            ref2_m = statistics.median(ref2_t)
            print(f"{info.width}x{info.height} JPEG {mb:.1f} MB, EXIF orientation {orientation}, "
                  f"{args.runs} runs, pyvips {pyvips.version(0)}.{pyvips.version(1)}, "
                  f"vips threads {pyvips.concurrency_get()} (gallery.processing.images sets 1 unless VIPS_CONCURRENCY is set)")
            print(f"  ours (shrink-on-load, cascade): median {ours_m * 1000:7.1f} ms  "
                  f"({sum(len(v.data) for v in ours_out) / 1e3:.0f} kB)")
            print(f"  pyvips thumbnail + cascade:      median {ref_m * 1000:7.1f} ms  "
                  f"({sum(len(d) for *_, d in ref_out) / 1e3:.0f} kB)")
            print(f"  pyvips, encodes on threads:      median {ref2_m * 1000:7.1f} ms")
            print(f"  ratio ours/pyvips: {ours_m / ref_m:.2f}   "
                  f"(ours/pyvips-with-threaded-encodes: {ours_m / ref2_m:.2f})")
            if ours_sizes != ref_sizes:
                print(f"  note: sizes differ\n    ours {ours_sizes}\n    vips {ref_sizes}")


if __name__ == "__main__":
    main()
