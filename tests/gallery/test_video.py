"""Video probing, posters, fast start, WebM transcoding; clips are made here with PyAV."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import av
import numpy as np
import pytest

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
