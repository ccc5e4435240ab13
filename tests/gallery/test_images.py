"""Image variants: orientation, sizes, colour, metadata stripping, odd modes, bombs."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageChops, ImageOps, ImageStat

from gallery.processing import images
from gallery.processing.images import (
    LEVELS,
    SQUARE_LEVELS,
    ImageError,
    RenderedVariant,
    render_variants,
    render_variants_from_image,
)

ALL_LEVELS = [*LEVELS, *SQUARE_LEVELS]


def by_level(variants: list[RenderedVariant]) -> dict[str, RenderedVariant]:
    return {v.level: v for v in variants}


def decode(variant: RenderedVariant) -> Image.Image:
    img = Image.open(io.BytesIO(variant.data))
    img.load()
    return img


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute grey-level difference after scaling both to the same small size."""
    size = (64, 64)
    a = a.convert("L").resize(size, Image.Resampling.BILINEAR)
    b = b.convert("L").resize(size, Image.Resampling.BILINEAR)
    return ImageStat.Stat(ImageChops.difference(a, b)).mean[0]


def encode(img: Image.Image, fmt: str, **params) -> io.BytesIO:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    buf.seek(0)
    return buf


# --- orientation ---------------------------------------------------------------------------
# The corpus pictures are one photo stored in each of the 8 EXIF orientations; only the
# big digit naming the orientation differs, so upright renders differ by ~1.5 grey levels
# and wrongly turned ones by 30+.
UPRIGHT = 8.0


@pytest.mark.parametrize("kind", ["landscape", "portrait"])
def test_all_eight_orientations_come_out_upright(corpus: Path, kind: str) -> None:
    folder = corpus / "jpg" / "orientation"
    _, ref_variants = render_variants(folder / f"{kind}_1.jpg")
    reference = decode(by_level(ref_variants)["5"])

    for n in range(1, 9):
        info, variants = render_variants(folder / f"{kind}_{n}.jpg")
        rendered = decode(by_level(variants)["5"])
        assert rendered.size == reference.size, n
        assert (info.width, info.height) == reference.size, n
        assert difference(rendered, reference) < UPRIGHT, f"{kind}_{n} is not upright"
        # The same check rejects a mirror image, so it also catches 2/4/5/7 mix-ups.
        assert difference(ImageOps.mirror(rendered), reference) > 3 * UPRIGHT


@pytest.mark.parametrize("n", [2, 3, 6, 8])
def test_orientation_check_fails_for_unrotated_pixels(corpus: Path, n: int) -> None:
    # Proves the check above can fail: the stored pixels, ignoring EXIF, are not upright.
    folder = corpus / "jpg" / "orientation"
    reference = decode(by_level(render_variants(folder / "landscape_1.jpg")[1])["5"])
    stored = Image.open(folder / f"landscape_{n}.jpg")
    assert difference(stored, reference) > 3 * UPRIGHT


# --- sizes ---------------------------------------------------------------------------------
def expected_sizes(width: int, height: int) -> dict[str, tuple[int, int]]:
    sizes = {}
    for level, side in LEVELS.items():
        scale = min(1.0, side / max(width, height))
        sizes[level] = (max(1, round(width * scale)), max(1, round(height * scale)))
    for level, side in SQUARE_LEVELS.items():
        n = min(side, width, height)
        sizes[level] = (n, n)
    return sizes


@pytest.mark.parametrize(
    "size", [(4000, 3000), (3000, 4000), (2400, 300), (640, 480), (100, 68), (5, 3), (333, 1)]
)
def test_variant_sizes_follow_the_level_rules(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    info, variants = render_variants(encode(Image.fromarray(pixels), "JPEG", quality=90))

    assert (info.width, info.height) == size
    assert [v.level for v in variants] == ALL_LEVELS
    want = expected_sizes(*size)
    for v in variants:
        img = decode(v)
        assert (v.width, v.height) == want[v.level], v.level
        assert img.size == (v.width, v.height), v.level
        if v.level in LEVELS:
            assert max(img.size) == min(max(size), LEVELS[v.level])
        else:
            assert img.width == img.height == min(*size, SQUARE_LEVELS[v.level])
        assert img.format == "WEBP"
        assert v.content_type == "image/webp"


def test_corpus_photo_sizes_and_squares(corpus: Path) -> None:
    info, variants = render_variants(corpus / "jpg" / "gps" / "DSCN0010.jpg")
    got = {v.level: (v.width, v.height) for v in variants}
    assert got == {
        "1": (10, 8), "2": (40, 30), "3": (160, 120), "4": (320, 240), "5": (640, 480),
        "6": (640, 480), "1s": (10, 10), "2s": (40, 40), "3s": (160, 160), "4s": (320, 320),
    }
    assert (info.width, info.height, info.format) == (640, 480, "JPEG")


def test_square_is_a_centre_crop() -> None:
    # Wide picture: red left third, green centre, blue right third; the square is green.
    img = Image.new("RGB", (900, 300), "green")
    img.paste((255, 0, 0), (0, 0, 300, 300))
    img.paste((0, 0, 255), (600, 0, 900, 300))
    _, variants = render_variants(encode(img, "PNG"))
    square = decode(by_level(variants)["3s"]).convert("RGB")
    r, g, b = ImageStat.Stat(square).mean
    assert g > 100 and r < 20 and b < 20


# --- metadata and colour -------------------------------------------------------------------
def riff_chunks(data: bytes) -> list[bytes]:
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    chunks, offset = [], 12
    while offset + 8 <= len(data):
        kind, size = data[offset:offset + 4], struct.unpack("<I", data[offset + 4:offset + 8])[0]
        chunks.append(kind)
        offset += 8 + size + (size & 1)
    return chunks


@pytest.mark.parametrize(
    "name",
    ["jpg/gps/DSCN0010.jpg", "jpg/orientation/landscape_6.jpg", "jpg/xmp/BlueSquare.jpg", "heic/IMG_5195.HEIC"],
)
def test_outputs_carry_no_metadata(corpus: Path, name: str) -> None:
    source = Image.open(corpus / name)
    assert source.info.get("exif") or source.info.get("xmp")  # the inputs do have some
    _, variants = render_variants(corpus / name)
    for v in variants:
        img = decode(v)
        assert not img.info.get("exif") and not img.info.get("icc_profile") and not img.info.get("xmp")
        assert len(img.getexif()) == 0
        assert not {b"EXIF", b"ICCP", b"XMP "} & set(riff_chunks(v.data))


def test_embedded_icc_profile_is_applied(corpus: Path) -> None:
    # The orientation pictures carry Apple's "Generic RGB" (gamma 1.8) profile. The same
    # pixels tagged with it must come out brighter in sRGB (gamma 2.2) than untagged.
    generic_rgb = Image.open(corpus / "jpg" / "orientation" / "landscape_2.jpg").info["icc_profile"]
    photo = Image.open(corpus / "jpg" / "gps" / "DSCN0010.jpg").convert("RGB")
    plain = decode(by_level(render_variants(encode(photo, "PNG"))[1])["4"])
    tagged = decode(by_level(render_variants(encode(photo, "PNG", icc_profile=generic_rgb))[1])["4"])
    brightness = lambda img: ImageStat.Stat(img.convert("L")).mean[0]  # noqa: E731
    assert brightness(tagged) > brightness(plain) + 5


def test_png_transparency_is_kept() -> None:
    pixels = np.zeros((300, 500, 4), np.uint8)
    pixels[..., 0] = 255
    pixels[:, 250:, 3] = 255  # left half fully transparent, right half opaque red
    info, variants = render_variants(encode(Image.fromarray(pixels, "RGBA"), "PNG"))
    assert info.has_alpha
    img = decode(by_level(variants)["5"])
    assert img.mode == "RGBA"
    assert img.getpixel((10, 10))[3] == 0
    assert img.getpixel((img.width - 10, 10))[3] == 255
    assert img.getpixel((img.width - 10, 10))[0] > 240


def test_opaque_alpha_channel_is_dropped() -> None:
    info, variants = render_variants(encode(Image.new("RGBA", (64, 64), (0, 0, 255, 255)), "PNG"))
    assert not info.has_alpha
    assert decode(variants[0]).mode == "RGB"


def test_palette_png_with_transparency_keeps_alpha() -> None:
    img = Image.new("P", (50, 50), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (0, 0, 25, 50))
    info, variants = render_variants(encode(img, "PNG", transparency=1))
    assert info.has_alpha
    out = decode(by_level(variants)["5"])
    transparent, opaque = out.getpixel((5, 25)), out.getpixel((45, 25))
    assert transparent[3] == 0
    assert opaque[0] == 255 and opaque[3] == 255


def test_cmyk_jpeg() -> None:
    info, variants = render_variants(encode(Image.new("CMYK", (400, 300), (0, 255, 255, 0)), "JPEG"))
    assert (info.width, info.height) == (400, 300)
    r, g, b = decode(by_level(variants)["3"]).convert("RGB").getpixel((80, 60))
    assert r > 230 and g < 30 and b < 30  # process red, not inverted cyan


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    gradient = np.tile(np.linspace(0, 65535, 600).astype(np.uint16), (400, 1))
    source = Image.fromarray(gradient)
    assert source.mode.startswith("I;16")
    _, variants = render_variants(encode(source, "PNG"))
    out = decode(by_level(variants)["5"]).convert("L")
    assert out.getpixel((2, 100)) < 10
    assert 110 < out.getpixel((out.width // 2, 100)) < 145
    assert out.getpixel((out.width - 3, 100)) > 245


def test_grey_with_alpha() -> None:
    info, variants = render_variants(encode(Image.new("LA", (200, 100), (128, 100)), "PNG"))
    assert info.has_alpha
    assert decode(by_level(variants)["4"]).getpixel((10, 10)) == pytest.approx((128, 128, 128, 100), abs=3)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_gives_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (120, 80), colour) for colour in ("red", "blue", "green")]
    source = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    info, variants = render_variants(source)
    assert info.animated
    r, g, b = decode(by_level(variants)["5"]).convert("RGB").getpixel((60, 40))
    assert r > 200 and g < 40 and b < 40


@pytest.mark.parametrize("name", ["IMG_5195.HEIC", "samplefilehub.heif"])
def test_heic_renders(corpus: Path, name: str) -> None:
    info, variants = render_variants(corpus / "heic" / name)
    assert info.format == "HEIF"
    assert [v.level for v in variants] == ALL_LEVELS
    assert by_level(variants)["6"].width == expected_sizes(info.width, info.height)["6"][0]
    assert decode(by_level(variants)["6"]).format == "WEBP"


def test_iphone_heic_dimensions(corpus: Path) -> None:
    info, variants = render_variants(corpus / "heic" / "IMG_5195.HEIC")
    assert (info.width, info.height) == (2566, 3313)
    assert (by_level(variants)["6"].width, by_level(variants)["6"].height) == (836, 1080)


def test_from_image_for_posters_and_covers() -> None:
    variants = render_variants_from_image(Image.new("RGB", (800, 600), "orange"))
    sizes = {v.level: (v.width, v.height) for v in variants}
    assert sizes == expected_sizes(800, 600)
    assert sizes["6"] == (800, 600)  # never upscaled


# --- refusals ------------------------------------------------------------------------------
def png_header_only(width: int, height: int) -> io.BytesIO:
    """A PNG whose header claims a size its (tiny) data does not have."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 16)
    return io.BytesIO(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's own, lower warning limit
def test_pixel_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(ImageError, match=r"120 megapixels, more than the limit of 100"):
        render_variants(png_header_only(12_000, 10_000))


def test_huge_bomb_caught_by_pillow_is_an_image_error() -> None:
    with pytest.raises(ImageError):
        render_variants(png_header_only(100_000, 100_000))


def test_max_pixels_is_configurable(corpus: Path) -> None:
    with pytest.raises(ImageError, match="megapixels"):
        render_variants(corpus / "jpg" / "gps" / "DSCN0010.jpg", max_pixels=300_000)
    render_variants(corpus / "jpg" / "gps" / "DSCN0010.jpg", max_pixels=307_200)


def test_broken_corpus_files_never_raise_anything_else(corpus: Path) -> None:
    names = [corpus / "jpg" / "corrupted.jpg", *sorted((corpus / "jpg" / "invalid").glob("*.jpg"))]
    assert len(names) == 8
    for name in names:
        try:
            info, variants = render_variants(name)
        except ImageError as exc:
            assert str(exc)
        else:
            assert len(variants) == len(ALL_LEVELS) and info.width > 0


def test_truncated_jpeg_is_an_image_error(corpus: Path) -> None:
    data = (corpus / "jpg" / "gps" / "DSCN0010.jpg").read_bytes()
    with pytest.raises(ImageError, match="truncated"):
        render_variants(io.BytesIO(data[: len(data) // 2]))


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\xff\xd8\xff\xe0garbage" * 10])
def test_garbage_is_an_image_error(data: bytes) -> None:
    with pytest.raises(ImageError):
        render_variants(io.BytesIO(data))


# --- libvips fast path ---------------------------------------------------------------------
# Big JPEG files on disk are decoded and shrunk by libvips, big RGB/grey resizes go through
# it too; everything else, and every file libvips refuses, stays with Pillow. Both paths
# must give the same pictures.
def camera_jpeg(path: Path, corpus: Path, *, size=(2400, 1800), mode="RGB", **params) -> Path:
    photo = Image.open(corpus / "jpg" / "gps" / "DSCN0010.jpg").convert(mode).resize(size, Image.Resampling.BICUBIC)
    photo.save(path, "JPEG", quality=90, **params)
    return path


def same_picture(variant: RenderedVariant) -> float:
    # The two resamplers differ by ~0.3 grey levels before encoding; at the small levels'
    # low WebP qualities that grows to a few. A wrong turn or colour would be 30+.
    return 1.0 if min(variant.width, variant.height) >= 240 else 5.0


def render_with_pillow_only(monkeypatch, source):
    with monkeypatch.context() as m:
        m.setattr(images, "pyvips", None)
        return render_variants(source)


@pytest.mark.parametrize("orientation", [1, 6])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_big_jpeg_file_through_libvips_matches_pillow(tmp_path: Path, corpus: Path, monkeypatch, mode: str,
                                                      orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = camera_jpeg(tmp_path / "big.jpg", corpus, mode=mode, exif=exif.tobytes())
    assert images._vips_jpeg(path, Image.open(path), (1080, 810)) is not None  # the fast path is taken

    info, fast = render_variants(path)
    pillow_info, slow = render_with_pillow_only(monkeypatch, path)
    assert info == pillow_info
    assert (info.width, info.height) == ((1800, 2400) if orientation == 6 else (2400, 1800))
    want = expected_sizes(info.width, info.height)
    assert [a.level for a in fast] == [b.level for b in slow] and set(want) == {a.level for a in fast}
    for a, b in zip(fast, slow, strict=True):
        assert a.level == b.level and (a.width, a.height) == (b.width, b.height) == want[a.level]
        assert decode(a).size == (a.width, a.height)
        assert difference(decode(a), decode(b)) < same_picture(a), a.level


def test_libvips_path_applies_the_icc_profile(tmp_path: Path, corpus: Path) -> None:
    generic_rgb = Image.open(corpus / "jpg" / "orientation" / "landscape_2.jpg").info["icc_profile"]
    plain = camera_jpeg(tmp_path / "plain.jpg", corpus)
    tagged = camera_jpeg(tmp_path / "tagged.jpg", corpus, icc_profile=generic_rgb)
    brightness = lambda img: ImageStat.Stat(img.convert("L")).mean[0]  # noqa: E731
    assert brightness(decode(by_level(render_variants(tagged)[1])["4"])) > \
        brightness(decode(by_level(render_variants(plain)[1])["4"])) + 5


def test_libvips_path_leaves_other_jpegs_to_pillow(tmp_path: Path, corpus: Path) -> None:
    big = camera_jpeg(tmp_path / "big.jpg", corpus)
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (2400, 1800), (0, 255, 255, 0)).save(cmyk, "JPEG")
    assert images._vips_jpeg(big, Image.open(big), (1080, 810)) is not None
    assert images._vips_jpeg(cmyk, Image.open(cmyk), (1080, 810)) is None  # CMYK
    assert images._vips_jpeg(io.BytesIO(big.read_bytes()), Image.open(big), (1080, 810)) is None  # a stream
    assert images._vips_jpeg(big, Image.open(big), (2400, 1800)) is None  # nothing to shrink


def test_truncated_jpeg_file_is_an_image_error(tmp_path: Path, corpus: Path) -> None:
    path = camera_jpeg(tmp_path / "big.jpg", corpus)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        render_variants(path)


def test_big_png_resized_through_libvips_matches_pillow(corpus: Path, monkeypatch) -> None:
    photo = Image.open(corpus / "jpg" / "gps" / "DSCN0010.jpg").convert("RGB").resize((2000, 1500))
    _, fast = render_variants(encode(photo, "PNG"))
    _, slow = render_with_pillow_only(monkeypatch, encode(photo, "PNG"))
    assert set(expected_sizes(2000, 1500)) == {a.level for a in fast}
    for a, b in zip(fast, slow, strict=True):
        assert (a.level, a.width, a.height) == (b.level, b.width, b.height)
        assert difference(decode(a), decode(b)) < same_picture(a), a.level
