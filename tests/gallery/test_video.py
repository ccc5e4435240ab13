"""Video probing, posters, fast start, WebM transcoding; clips are made here with PyAV."""

from __future__ import annotations

import struct
import zlib
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from gallery.models import Media
from gallery.processing.video import (
    VideoError,
    VideoInfo,
    browser_playable,
    extract_poster,
    needs_faststart,
    probe_video,
    remux_faststart,
    transcode_webm,
)

W, H = 160, 96


def make_clip(
    path: Path, *, codec: str = "libx264", fmt: str | None = None, seconds: float = 2.0, rate: int = 25,
    rotation: int | None = None, audio: bool = True, movflags: str | None = None,
) -> Path:
    """A clip whose top-left quadrant is red and whose green channel counts frames."""
    options = {"movflags": movflags} if movflags else {}
    with av.open(str(path), "w", format=fmt, options=options) as out:
        video = out.add_stream(codec, rate=rate)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        if rotation is not None:
            video.set_display_rotation(rotation)  # counter-clockwise, as in a phone's display matrix
        sound = out.add_stream("aac", rate=44100) if audio else None
        for i in range(int(seconds * rate)):
            pixels = np.zeros((H, W, 3), np.uint8)
            pixels[: H // 2, : W // 2, 0] = 255
            pixels[..., 1] = min(255, i * 5)
            out.mux(video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        out.mux(video.encode(None))
        if sound is not None:
            samples = 0
            while samples < seconds * 44100:
                tone = 0.2 * np.sin(2 * np.pi * 440 * (np.arange(1024) + samples) / 44100)
                samples_2d = tone.astype(np.float32)[None, :]
                frame = av.AudioFrame.from_ndarray(samples_2d, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 44100, samples
                samples += 1024
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    return path


def top_level_order(path: Path) -> list[bytes]:
    data = path.read_bytes()
    kinds, offset = [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        kinds.append(data[offset + 4 : offset + 8])
        offset += size if size >= 8 else len(data)
    return kinds


def is_red(pixel: tuple[int, ...]) -> bool:
    return pixel[0] > 200 and pixel[2] < 60


def test_probe_h264_mp4(tmp_path: Path) -> None:
    info = probe_video(make_clip(tmp_path / "clip.mp4"))
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert (info.width, info.height, info.rotation) == (W, H, 0)
    assert info.fps == pytest.approx(25.0)
    assert (info.video_codec, info.audio_codec, info.container) == ("h264", "aac", "mp4")
    assert info.bitrate and info.bitrate > 0
    assert browser_playable(info)


def test_rotated_phone_clip(tmp_path: Path) -> None:
    # Display matrix -90 (counter-clockwise) = turn 90 degrees clockwise, as iPhones record portrait.
    path = make_clip(tmp_path / "portrait.mp4", rotation=-90, audio=False)
    info = probe_video(path)
    assert info.rotation == 90
    assert (info.width, info.height) == (H, W)
    poster = extract_poster(path, info)
    assert poster.size == (H, W)
    # The stored top-left red quadrant is top-right once turned clockwise.
    assert is_red(poster.getpixel((H - 10, 10)))
    assert not is_red(poster.getpixel((10, 10)))
    assert not is_red(poster.getpixel((H - 10, W - 10)))


def test_poster_is_upright_and_taken_at_ten_percent_of_a_short_clip(tmp_path: Path) -> None:
    path = make_clip(tmp_path / "clip.mp4", seconds=4.0, rate=25)
    info = probe_video(path)
    poster = extract_poster(path, info)
    assert poster.size == (W, H) and poster.mode == "RGB"
    assert is_red(poster.getpixel((10, 10))) and not is_red(poster.getpixel((W - 10, 10)))
    # Green counts frames (5 per frame): 10 % of 4 s is frame 10, i.e. green ~50, not 0.
    green = poster.getpixel((W - 10, H - 10))[1]
    assert 35 < green < 65


def test_poster_at_one_second_of_a_long_clip(tmp_path: Path) -> None:
    path = make_clip(tmp_path / "long.mp4", seconds=12.0, rate=5, audio=False)
    info = probe_video(path)
    green = extract_poster(path, info).getpixel((W - 10, H - 10))[1]
    assert 15 < green < 35  # frame 5 at 5 fps: green 25


def test_mpeg4_avi_is_not_browser_playable(tmp_path: Path) -> None:
    path = make_clip(tmp_path / "old.avi", codec="mpeg4", audio=False)
    info = probe_video(path)
    assert (info.video_codec, info.container) == ("mpeg4", "avi")
    assert not browser_playable(info)
    assert not needs_faststart(path)  # not an MP4 at all
    assert extract_poster(path, info).size == (W, H)


@pytest.mark.parametrize(
    "changes, playable",
    [
        ({}, True),
        ({"video_codec": "hevc"}, False),
        ({"video_codec": "vp9", "container": "webm", "audio_codec": "opus"}, True),
        ({"video_codec": "av1", "container": "mp4"}, True),
        ({"container": "mkv"}, False),
        ({"container": "asf", "video_codec": "wmv2"}, False),
        ({"audio_codec": "pcm_s16le"}, False),
        ({"pixel_format": "yuv422p10le"}, False),
        ({"container": "mov", "audio_codec": None}, True),
    ],
)
def test_browser_playable_rules(changes: dict, playable: bool) -> None:
    info = VideoInfo(duration=1.0, width=W, height=H, fps=25.0, rotation=0, video_codec="h264",
                     audio_codec="aac", container="mp4", bitrate=1000, pixel_format="yuv420p")
    for key, value in changes.items():
        setattr(info, key, value)
    assert browser_playable(info) is playable


def test_faststart_detection_and_remux(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "slow.mp4")  # FFmpeg's mp4 muxer writes moov last by default
    assert top_level_order(src).index(b"mdat") < top_level_order(src).index(b"moov")
    assert needs_faststart(src)

    dst = tmp_path / "fast.mp4"
    remux_faststart(src, dst)
    order = top_level_order(dst)
    assert order.index(b"moov") < order.index(b"mdat")
    assert not needs_faststart(dst)
    before, after = probe_video(src), probe_video(dst)
    assert (after.video_codec, after.audio_codec, after.width, after.height) == ("h264", "aac", W, H)
    assert after.duration == pytest.approx(before.duration, abs=0.05)
    with av.open(str(dst)) as check:  # every frame still decodes
        assert sum(1 for _ in check.decode(video=0)) == 50


def test_remux_keeps_rotation(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "slow.mp4", rotation=-90, audio=False)
    remux_faststart(src, tmp_path / "fast.mp4")
    assert probe_video(tmp_path / "fast.mp4").rotation == 90


def test_transcode_webm(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "clip.mp4", seconds=1.0, rotation=-90)
    dst = tmp_path / "clip.webm"
    transcode_webm(src, dst, max_height=80)
    info = probe_video(dst)
    assert (info.video_codec, info.audio_codec, info.container) == ("vp9", "opus", "webm")
    # Turned upright in the pixels (no rotation flag needed) and scaled to 80 lines, even width.
    assert (info.rotation, info.height, info.width) == (0, 80, 48)
    assert info.duration == pytest.approx(1.0, abs=0.15)
    assert browser_playable(info)
    poster = extract_poster(dst, info)
    assert is_red(poster.getpixel((info.width - 5, 5))) and not is_red(poster.getpixel((5, 5)))


def test_truncated_file_is_a_video_error(tmp_path: Path) -> None:
    data = make_clip(tmp_path / "clip.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # moov was at the end: gone
    with pytest.raises(VideoError):
        probe_video(tmp_path / "cut.mp4")

    data = make_clip(tmp_path / "fast.mp4", movflags="faststart").read_bytes()
    (tmp_path / "cut2.mp4").write_bytes(data[:3000])  # index intact, frames gone
    with pytest.raises(VideoError, match="no decodable frame"):
        probe_video(tmp_path / "cut2.mp4")


def test_non_videos_are_video_errors(tmp_path: Path, corpus: Path) -> None:
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 4000)
    for path in [tmp_path / "junk.mp4", corpus / "jpg" / "Canon_40D.jpg", corpus / "heic" / "IMG_5195.HEIC"]:
        with pytest.raises(VideoError):
            probe_video(path)
    with av.open(str(tmp_path / "tone.m4a"), "w") as out:  # audio only
        stream = out.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 44100
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(VideoError, match="no video stream"):
        probe_video(tmp_path / "tone.m4a")


def test_phone_metadata_date_and_location(tmp_path: Path) -> None:
    path = tmp_path / "phone.mov"
    with av.open(str(path), "w", format="mov") as out:
        out.metadata["creation_time"] = "2021-04-11T20:47:53.000000Z"
        out.metadata["location"] = "+39.0513-094.2887+260.560/"
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        for _ in range(5):
            out.mux(video.encode(av.VideoFrame.from_ndarray(np.zeros((H, W, 3), np.uint8), format="rgb24")))
        out.mux(video.encode(None))
    info = probe_video(path)
    assert info.container == "mov"
    assert info.created_at == datetime(2021, 4, 11, 20, 47, 53, tzinfo=timezone.utc)
    assert (info.latitude, info.longitude) == (39.0513, -94.2887)


# --- Pixel bombs -------------------------------------------------------------------------
BOMB_COLOUR = (200, 30, 30)


def one_colour_png(width: int, height: int, rgb: tuple[int, int, int] = BOMB_COLOUR) -> bytes:
    """An 8-bit RGB PNG of one colour, built without holding its pixels: 16000x16000 (768 MB
    of pixels) takes a fraction of a second and under 1 MB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width  # filter byte "none", then the pixels
    rows = max(1, min(height, (4 << 20) // len(row)))
    block = row * rows
    # A full flush resets the compressor's window, so every copy of the block compresses to
    # the same bytes: compress it once and repeat it.
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    rest = row * (height % rows)
    tail = packer.compress(rest) + packer.flush()
    adler = 1
    for _ in range(height // rows):
        adler = zlib.adler32(block, adler)
    adler = zlib.adler32(rest, adler)
    idat = b"\x78\xda" + packed * (height // rows) + tail + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def png_movie(path: Path, width: int, height: int, *, frames: int = 2,
              declared: tuple[int, int] | None = None) -> Path:
    """A MOV of one-colour PNG frames, packets muxed as they are (nothing is encoded). The
    container says `declared` (default: the true size), as a lying file would."""
    data = one_colour_png(width, height)
    with av.open(str(path), "w", format="mov") as out:
        stream = out.add_stream("png", rate=1)
        stream.width, stream.height = declared or (width, height)
        stream.pix_fmt = "rgb24"
        for i in range(frames):
            packet = av.Packet(data)
            packet.stream, packet.time_base = stream, Fraction(1, 1)
            packet.pts = packet.dts = i
            packet.is_keyframe = True
            out.mux(packet)
    return path


def processed(client, upload, path: Path) -> Media:
    response = upload(client, path)
    assert response.status_code == 201, response.content
    return Media.objects.get(pk=response.json()["id"])


def test_16000_square_png_movie_fails_on_the_pixel_limit_before_decoding(alice_api, upload, tmp_path,
                                                                       settings):
    # The reported attack: 256 MP frames reached `ready` after a 4 GB peak.
    assert settings.MAX_IMAGE_PIXELS == 100_000_000
    bomb = png_movie(tmp_path / "bomb.mov", 16000, 16000)
    assert bomb.stat().st_size < 2_000_000
    media = processed(alice_api, upload, bomb)
    assert media.status == Media.Status.FAILED
    assert media.error == "video frames have 256 megapixels (16000x16000), more than the limit of 100"
    assert not media.variants.exists()


def test_frames_over_a_lowered_limit_fail_and_a_normal_video_stays_ready(alice_api, upload, tmp_path, settings):
    settings.MAX_IMAGE_PIXELS = 2_000_000
    media = processed(alice_api, upload, png_movie(tmp_path / "big.mov", 2000, 1500))
    assert media.status == Media.Status.FAILED
    assert media.error == "video frames have 3 megapixels (2000x1500), more than the limit of 2"
    assert not media.variants.exists()

    media = processed(alice_api, upload, png_movie(tmp_path / "fits.mov", 1600, 1200))  # 1.92 MP
    assert media.status == Media.Status.READY, media.error
    poster = media.variants.get(level="6")
    assert (poster.width, poster.height) == (1080, 810)

    media = processed(alice_api, upload, make_clip(tmp_path / "clip.mp4"))
    assert media.status == Media.Status.READY, media.error
    assert {"1", "2", "3", "1s", "2s", "3s"} <= set(media.variants.values_list("level", flat=True))


def test_frames_larger_than_the_container_declares_are_refused_by_the_decoder(alice_api, upload, tmp_path):
    # The MOV header says 160x96; the PNG inside is 16000x16000. Only the decoder's own
    # limit can catch it, and it must before allocating the frame.
    liar = png_movie(tmp_path / "liar.mov", 16000, 16000, declared=(W, H))
    media = processed(alice_api, upload, liar)
    assert media.status == Media.Status.FAILED
    assert "over the limit of 100 megapixels" in media.error
    assert not media.variants.exists()
    with pytest.raises(VideoError, match="over the limit of 100 megapixels"):
        probe_video(liar)


def test_poster_of_a_large_frame_is_decoded_straight_to_the_working_size(tmp_path: Path) -> None:
    path = png_movie(tmp_path / "wide.mov", 4000, 2000, frames=1)
    info = probe_video(path)
    assert (info.width, info.height, info.video_codec) == (4000, 2000, "png")
    poster = extract_poster(path, info)
    assert poster.size == (1080, 540) and poster.mode == "RGB"  # images.working_size(4000, 2000)
    assert poster.getpixel((540, 270)) == BOMB_COLOUR
    with pytest.raises(VideoError, match=r"8 megapixels \(4000x2000\), more than the limit of 7"):
        probe_video(path, max_pixels=7_000_000)
