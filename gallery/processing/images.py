"""Image variants: upright, sRGB, metadata-free WebP renditions at fixed levels.

Pure functions: bytes or a path in, encoded variants out. No models, no storage.

Speed comes from three habits. JPEGs are decoded at a reduced scale so libjpeg's DCT
scaling does most of the downscale for free (we never need more than 1080 px): by libvips
when the file is a plain 8-bit JPEG on disk, whose vectorised Lanczos then takes it to
the working size several times faster than Pillow's resize (that one resize was a fifth
of a photo's CPU time), otherwise by Pillow's `draft()`. Each smaller level is
resized from the one above it (a cascade) instead of from the full image. WebP encoding,
the largest remaining cost, runs on a few threads (libwebp releases the GIL).
bench/variants.py compares this with a pyvips-only implementation.
"""

from __future__ import annotations

import functools
import io
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO

import pillow_heif
from PIL import Image, ImageCms, UnidentifiedImageError

pillow_heif.register_heif_opener()

try:
    import pyvips
except (ImportError, OSError):  # no libvips for this platform: Pillow does all the work
    pyvips = None
else:
    # Each file is read once, so libvips' operation cache would only hold open files and
    # memory. A worker already renders photos in parallel: one libvips thread per render
    # spends the least CPU per photo (VIPS_CONCURRENCY still overrides).
    pyvips.cache_set_max(0)
    if "VIPS_CONCURRENCY" not in os.environ:
        pyvips.concurrency_set(1)

# Longest side in pixels; never upscaled.
LEVELS: dict[str, int] = {"1": 10, "2": 40, "3": 160, "4": 320, "5": 640, "6": 1080}
# Side of a centre-cropped square; never larger than the source's short side.
SQUARE_LEVELS: dict[str, int] = {"1s": 10, "2s": 40, "3s": 160, "4s": 320}

# Tiny previews tolerate heavy compression; big ones are looked at closely.
_QUALITY: dict[str, int] = {
    "1": 40, "2": 50, "3": 60, "4": 68, "5": 75, "6": 80,
    "1s": 40, "2s": 50, "3s": 60, "4s": 68,
}
# WebP effort (0-6). Measured on a 12 MP photo: 2 spends 30 % less CPU than libwebp's
# default 4 for files about 3 % larger; encoding is most of the work of an import.
_WEBP_METHOD = 2
_ENCODE_THREADS = max(1, min(4, os.cpu_count() or 1))

_MAX_SIDE = max(LEVELS.values())
_MAX_SQUARE = max(SQUARE_LEVELS.values())
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


class ImageError(Exception):
    """The image cannot be rendered; the message is shown to the user as the reason."""


@dataclass
class RenderedVariant:
    level: str
    width: int
    height: int
    data: bytes
    content_type: str = "image/webp"


@dataclass
class ImageInfo:
    width: int  # after auto-orientation
    height: int
    format: str
    has_alpha: bool  # there is at least one pixel that is not fully opaque
    animated: bool


def render_variants(
    source: str | os.PathLike | IO[bytes], *, max_pixels: int = 100_000_000
) -> tuple[ImageInfo, list[RenderedVariant]]:
    """Decode an image file and render every level; raise ImageError if it cannot be read."""
    try:
        img = Image.open(source)
    except Image.DecompressionBombError as exc:
        # Pillow's own guard (gallery.apps aligns it with MAX_IMAGE_PIXELS) fires while
        # reading the header, at twice its limit: still nothing decoded.
        raise ImageError(f"image is too large to process safely, over the limit of "
                         f"{max_pixels / 1e6:.0f} megapixels ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError("not an image, or an image format we cannot read") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"cannot read image: {exc}") from exc

    with img:
        # Only the header has been read so far: refuse pixel bombs before decoding them.
        stored_w, stored_h = img.size
        if stored_w <= 0 or stored_h <= 0:
            raise ImageError(f"image has invalid dimensions {stored_w}x{stored_h}")
        if stored_w * stored_h > max_pixels:
            raise ImageError(
                f"image has {stored_w * stored_h / 1e6:.0f} megapixels, "
                f"more than the limit of {max_pixels / 1e6:.0f}"
            )
        fmt = img.format or "unknown"
        # An MPO (stereo or multi-shot JPEG from some cameras) has frames but is no animation.
        animated = bool(getattr(img, "is_animated", False)) and fmt != "MPO"
        try:
            orientation = _orientation(img)
            if orientation in (5, 6, 7, 8):
                width, height = stored_h, stored_w
            else:
                width, height = stored_w, stored_h
            size = working_size(stored_w, stored_h)
            decoded = _vips_jpeg(source, img, size)
            if decoded is None:
                if fmt in ("JPEG", "MPO"):
                    # libjpeg scales by 1/2, 1/4 or 1/8 while decoding, never below this size.
                    img.draft(None, size)
                img.load()
                decoded = img
            has_alpha, working = _prepare(decoded, stored_w, stored_h, orientation, img.info.get("icc_profile"))
            variants = _cascade(working, width, height)
        except Image.DecompressionBombError as exc:
            raise ImageError(f"image is too large to process safely ({exc})") from exc
        except MemoryError as exc:
            raise ImageError("not enough memory to decode the image") from exc
        except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError) as exc:
            # Pillow reports broken data with assorted exception types; a truncated JPEG
            # is an OSError("image file is truncated ...").
            raise ImageError(f"image data is damaged or truncated: {exc}") from exc
    return ImageInfo(width, height, fmt, has_alpha, animated), variants


def render_variants_from_image(img: Image.Image) -> list[RenderedVariant]:
    """Render every level from an already decoded image (a video poster, audio cover art)."""
    try:
        img.load()
        orientation = _orientation(img)
        _, working = _prepare(img, img.width, img.height, orientation, img.info.get("icc_profile"))
        return _cascade(working, working.width, working.height)
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError) as exc:
        raise ImageError(f"image data is damaged or truncated: {exc}") from exc


def _vips_jpeg(source: str | os.PathLike | IO[bytes], img: Image.Image, size: tuple[int, int]) -> Image.Image | None:
    """A plain JPEG file decoded straight to `size` by libvips (shrink-on-load, then
    Lanczos 3), still in its stored orientation and colour space; None to let Pillow do it."""
    if (pyvips is None or img.format != "JPEG" or img.mode not in ("RGB", "L") or img.size == size
            or not isinstance(source, (str, os.PathLike))):
        return None  # CMYK, MPO, a stream, or no resize needed: Pillow's path is as fast
    w, h = img.size
    # The same DCT scale Pillow's draft() picks: the largest that stays at or above `size`.
    shrink = next(s for s in (8, 4, 2, 1) if min(w // size[0], h // size[1]) >= s)
    try:
        vimg = pyvips.Image.jpegload(os.fspath(source), shrink=shrink, access="sequential", fail_on="truncated")
        if vimg.bands != len(img.mode) or vimg.format != "uchar":
            return None
        if (vimg.width, vimg.height) != size:
            vimg = vimg.reduce(vimg.width / size[0], vimg.height / size[1], kernel="lanczos3")
        data = vimg.write_to_memory()
        if (vimg.width, vimg.height) != size:
            return None
    except pyvips.Error:
        # A damaged file: Pillow's decoder decides, so broken files fail (or not) as before.
        return None
    return Image.frombuffer(img.mode, size, data, "raw", img.mode, 0, 1)


def _prepare(img: Image.Image, stored_w: int, stored_h: int, orientation: int,
             icc: bytes | None) -> tuple[bool, Image.Image]:
    """Return (has_alpha, upright sRGB RGB/RGBA image at the working size)."""
    img = _drop_opaque_alpha(_normalise_mode(img))
    # Shrink before rotating and colour-converting: both then touch ~1 MP, not 12.
    # (Pillow premultiplies alpha inside resize, so invisible pixels do not bleed.)
    img = _resize(img, working_size(stored_w, stored_h))
    alpha = None
    if img.mode in ("RGBA", "LA"):
        alpha = img.getchannel("A")
        img = img.convert(img.mode[:-1])
    img = _apply_icc(img, icc) if icc else img
    if img.mode != "RGB":
        img = img.convert("RGB")  # CMYK without a usable profile, L
    if alpha is not None:
        img.putalpha(alpha)
    return alpha is not None, _upright(img, orientation)


def _orientation(img: Image.Image) -> int:
    # A damaged EXIF block must not cost us the picture: treat it as upright.
    try:
        value = img.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - Pillow's EXIF parser raises anything on bad data
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _upright(img: Image.Image, orientation: int) -> Image.Image:
    method = _TRANSPOSE.get(orientation)
    return img.transpose(method) if method is not None else img


def working_size(w: int, h: int) -> tuple[int, int]:
    """The smallest size that still feeds every level and square without upscaling."""
    scale = min(1.0, max(_MAX_SIDE / max(w, h), _MAX_SQUARE / min(w, h)))
    return max(1, round(w * scale)), max(1, round(h * scale))


def _normalise_mode(img: Image.Image) -> Image.Image:
    """Bring any Pillow mode to RGB, RGBA, L, LA or CMYK, the modes we resize in."""
    mode = img.mode
    if mode in ("P", "PA"):
        return img.convert("RGBA" if mode == "PA" or "transparency" in img.info else "RGB")
    if mode.startswith("I;16") or mode == "I":
        return _sixteen_to_l(img)
    if mode == "F":
        return _float_to_l(img)
    if mode in ("L", "RGB") and "transparency" in img.info:
        return img.convert("LA" if mode == "L" else "RGBA")
    if mode in ("RGBa", "La"):
        return img.convert("RGBA" if mode == "RGBa" else "LA")
    if mode in ("RGB", "RGBA", "L", "LA", "CMYK"):
        return img
    return img.convert("RGB")  # 1, YCbCr, LAB, HSV, RGBX


def _drop_opaque_alpha(img: Image.Image) -> Image.Image:
    # Many PNGs carry an alpha channel that is 255 everywhere; it only makes WebPs bigger.
    if img.mode in ("RGBA", "LA") and img.getchannel("A").getextrema() == (255, 255):
        return img.convert(img.mode[:-1])
    return img


def _sixteen_to_l(img: Image.Image) -> Image.Image:
    # convert("L") clips 16-bit values at 255 instead of scaling them: scale first.
    img = img.convert("I")
    _, hi = img.getextrema()
    if hi > 255:
        img = img.point(lambda v: v * (1 / 257))
    return img.convert("L")


def _float_to_l(img: Image.Image) -> Image.Image:
    lo, hi = img.getextrema()
    span = (hi - lo) or 1.0
    return img.point(lambda v: (v - lo) * (255 / span)).convert("L")


_ICC_SPACE_MODE = {"RGB": "RGB", "CMYK": "CMYK", "GRAY": "L"}


def _apply_icc(img: Image.Image, icc: bytes) -> Image.Image:
    """Convert to sRGB with the embedded profile; leave as is when the profile is unusable."""
    transform = _transform_for(icc, img.mode)
    if transform is None:
        return img
    try:
        return ImageCms.applyTransform(img, transform) or img
    except (ImageCms.PyCMSError, ValueError, OSError):
        return img


@functools.lru_cache(maxsize=64)
def _transform_for(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    # Cached: photos from one camera share a profile, and building a transform costs more
    # than applying it to a 1 MP working image.
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None
    space = profile.profile.xcolor_space.strip()
    if _ICC_SPACE_MODE.get(space) != mode:
        return None  # profile does not describe these pixels (a broken file): ignore it
    if space == "RGB" and "srgb" in ImageCms.getProfileDescription(profile).lower():
        return None  # already sRGB: skip a costly no-op transform
    try:
        return ImageCms.buildTransform(
            profile, _SRGB, mode, "RGB", renderingIntent=ImageCms.Intent.PERCEPTUAL
        )
    except (ImageCms.PyCMSError, ValueError, OSError):
        return None


def _fit(w: int, h: int, side: int) -> tuple[int, int]:
    if max(w, h) <= side:
        return w, h
    scale = side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


# From this many pixels on, an RGB or grey resize goes through libvips: copying the pixels
# across costs less than what its vectorised Lanczos saves (level 6 -> 5: 6 ms, not 13).
_VIPS_RESIZE_MIN_PIXELS = 500_000


def _resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    if img.size == size:
        return img
    if pyvips is not None and img.mode in ("RGB", "L") and img.width * img.height >= _VIPS_RESIZE_MIN_PIXELS:
        try:
            vimg = pyvips.Image.new_from_memory(img.tobytes(), img.width, img.height, len(img.mode), "uchar")
            vimg = vimg.reduce(img.width / size[0], img.height / size[1], kernel="lanczos3")
            if (vimg.width, vimg.height) == size:
                return Image.frombuffer(img.mode, size, vimg.write_to_memory(), "raw", img.mode, 0, 1)
        except pyvips.Error:
            pass  # out of memory or the like: Pillow tries
    # reducing_gap lets Pillow box-reduce by an integer factor first (fast) and finish
    # with Lanczos over a short distance (sharp): indistinguishable at these sizes.
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _cascade(img: Image.Image, width: int, height: int) -> list[RenderedVariant]:
    """Resize level by level from the largest; `width`, `height` are the original's upright size."""
    # WebP encoding is most of the cost and libwebp releases the GIL, so levels are
    # encoded on a couple of threads while this one keeps resizing. A pool per call
    # costs microseconds and stays correct in forked worker processes.
    with ThreadPoolExecutor(max_workers=_ENCODE_THREADS) as pool:
        futures: list[Future[RenderedVariant]] = []
        short = min(width, height)
        # Squares start from the smallest level whose short side still covers the largest
        # square (level 5 for a photo: half the work of cropping level 6); for a long
        # panorama no level does and they start from the decoded image.
        source = current = img
        for level, side in sorted(LEVELS.items(), key=lambda kv: -kv[1]):
            current = _resize(current, _fit(width, height, side))
            futures.append(pool.submit(_encode, level, current))
            if min(current.size) >= min(short, _MAX_SQUARE):
                source = current

        sw, sh = source.size
        s = min(sw, sh)
        left, upper = (sw - s) // 2, (sh - s) // 2
        current = source.crop((left, upper, left + s, upper + s))
        for level, side in sorted(SQUARE_LEVELS.items(), key=lambda kv: -kv[1]):
            n = min(side, short)
            current = _resize(current, (n, n))
            futures.append(pool.submit(_encode, level, current))
        out = [f.result() for f in futures]
    return sorted(out, key=lambda v: _ORDER[v.level])


_ORDER = {level: i for i, level in enumerate([*LEVELS, *SQUARE_LEVELS])}


def _encode(level: str, img: Image.Image) -> RenderedVariant:
    buf = io.BytesIO()
    # No exif/icc/xmp passed: WebP output carries no metadata (pixels are already sRGB).
    img.save(buf, "WEBP", quality=_QUALITY[level], method=_WEBP_METHOD, exif=b"", xmp=b"")
    return RenderedVariant(level, img.width, img.height, buf.getvalue())
