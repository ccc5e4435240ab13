"""Audio tags and cover art: files are encoded here with PyAV, tagged with mutagen."""

from __future__ import annotations

import base64
import io
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from mutagen.flac import FLAC, Picture
from mutagen.id3 import APIC, ID3, TALB, TIT2, TPE1, TRCK
from mutagen.mp4 import MP4, MP4Cover
from mutagen.oggopus import OggOpus
from mutagen.wave import WAVE
from PIL import Image

from gallery.processing.audio import AudioError, read_audio


@pytest.fixture(scope="module")
def cover() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), "red").save(buf, "JPEG")
    return buf.getvalue()


def back_cover() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), "blue").save(buf, "PNG")
    return buf.getvalue()


def encode_tone(path: Path, codec: str, *, fmt: str | None = None, rate: int = 44100) -> Path:
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(tone[None, :], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        # Each encoder wants its own sample format; the resampler also splits into frames.
        sample_format = stream.codec_context.codec.audio_formats[0].name
        resampler = av.AudioResampler(format=sample_format, layout="mono", rate=rate)
        for chunk in resampler.resample(frame) + resampler.resample(None):
            out.mux(stream.encode(chunk))
        out.mux(stream.encode(None))
    return path


def picture(data: bytes, kind: int, mime: str = "image/jpeg") -> Picture:
    pic = Picture()
    pic.type, pic.mime, pic.data = kind, mime, data
    return pic


def tagged_mp3(tmp_path: Path, cover: bytes) -> Path:
    path = encode_tone(tmp_path / "song.mp3", "libmp3lame")
    tags = ID3()
    tags.add(TIT2(encoding=3, text="Song"))
    tags.add(TPE1(encoding=3, text="Artist"))
    tags.add(TALB(encoding=3, text="Album"))
    tags.add(TRCK(encoding=3, text="3/12"))
    tags.add(APIC(encoding=3, mime="image/png", type=4, desc="back", data=back_cover()))
    tags.add(APIC(encoding=3, mime="image/jpeg", type=3, desc="front", data=cover))
    tags.save(path)
    return path


def tagged_m4a(tmp_path: Path, cover: bytes) -> Path:
    path = encode_tone(tmp_path / "song.m4a", "aac", fmt="ipod")
    tags = MP4(path)
    tags["\xa9nam"], tags["\xa9ART"], tags["\xa9alb"] = ["Song"], ["Artist"], ["Album"]
    tags["trkn"] = [(3, 12)]
    tags["covr"] = [MP4Cover(cover, imageformat=MP4Cover.FORMAT_JPEG)]
    tags.save()
    return path


def tagged_flac(tmp_path: Path, cover: bytes) -> Path:
    path = encode_tone(tmp_path / "song.flac", "flac")
    tags = FLAC(path)
    tags["title"], tags["artist"], tags["album"], tags["tracknumber"] = "Song", "Artist", "Album", "03"
    tags.add_picture(picture(back_cover(), 4, "image/png"))
    tags.add_picture(picture(cover, 3))
    tags.save()
    return path


def tagged_opus(tmp_path: Path, cover: bytes) -> Path:
    path = encode_tone(tmp_path / "song.opus", "libopus", fmt="ogg", rate=48000)
    tags = OggOpus(path)
    tags["title"], tags["artist"], tags["album"], tags["tracknumber"] = "Song", "Artist", "Album", "3"
    tags["metadata_block_picture"] = [base64.b64encode(picture(cover, 3).write()).decode("ascii")]
    tags.save()
    return path


@pytest.mark.parametrize(
    "make, codec, sample_rate",
    [
        (tagged_mp3, "mp3", 44100), (tagged_m4a, "aac", 44100),
        (tagged_flac, "flac", 44100), (tagged_opus, "opus", 48000),
    ],
)
def test_tags_and_front_cover(tmp_path: Path, cover: bytes, make, codec: str, sample_rate: int) -> None:
    info = read_audio(make(tmp_path, cover))
    assert (info.title, info.artist, info.album, info.track) == ("Song", "Artist", "Album", 3)
    assert info.codec == codec
    assert info.sample_rate == sample_rate
    assert info.duration == pytest.approx(1.0, abs=0.1)
    assert info.bitrate and info.bitrate > 1000
    assert info.cover == cover  # the front cover, even where a back cover comes first
    assert Image.open(io.BytesIO(info.cover)).size == (40, 40)


def test_untagged_wav_with_id3(tmp_path: Path, cover: bytes) -> None:
    path = tmp_path / "memo.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(22050)
        out.writeframes(b"\x00\x00" * 22050)
    plain = read_audio(path)
    assert (plain.title, plain.track, plain.cover, plain.codec) == ("", None, None, "pcm")
    assert plain.duration == pytest.approx(1.0) and plain.sample_rate == 22050

    tags = WAVE(path)
    tags.add_tags()
    tags.tags.add(TIT2(encoding=3, text="Memo"))
    tags.tags.add(APIC(encoding=3, mime="image/jpeg", type=3, desc="", data=cover))
    tags.save()
    info = read_audio(path)
    assert (info.title, info.cover) == ("Memo", cover)


@pytest.mark.parametrize("data", [b"", b"garbage" * 1000, b"ID3\x04\x00\x00\x00\x00\x00\x10" + b"\xff" * 50])
def test_unreadable_files_are_audio_errors(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "broken.mp3"
    path.write_bytes(data)
    with pytest.raises(AudioError):
        read_audio(path)


def test_image_is_not_audio(corpus: Path) -> None:
    with pytest.raises(AudioError):
        read_audio(corpus / "jpg" / "Canon_40D.jpg")
