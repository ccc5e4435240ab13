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

from gallery.models import Media
from gallery.processing.audio import AudioError, read_audio
from tests.gallery.test_video import one_colour_png


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


# --- Oversized cover art -----------------------------------------------------------------
# The cover is decoration: a track whose picture is a pixel bomb stays `ready`, playable,
# with no cover levels and a note saying why (pipeline._audio).
COVER_LEVELS = {"1", "2", "3", "4", "5", "6", "1s", "2s", "3s", "4s"}


def uploaded(client, upload, path: Path) -> Media:
    response = upload(client, path)
    assert response.status_code == 201, response.content
    return Media.objects.get(pk=response.json()["id"])


def test_mp3_with_a_16000_square_cover_stays_ready_without_cover_levels(alice_api, upload, tmp_path, settings):
    assert settings.MAX_IMAGE_PIXELS == 100_000_000
    bomb = one_colour_png(16000, 16000)  # 768 MB of pixels in under 1 MB
    song = tagged_mp3(tmp_path, bomb)
    assert read_audio(song).cover == bomb
    media = uploaded(alice_api, upload, song)
    assert media.status == Media.Status.READY, media.error
    assert media.duration == pytest.approx(1.0, abs=0.1) and media.details["title"] == "Song"
    assert media.error.startswith("cover art could not be read: image is too large to process safely, "
                                  "over the limit of 100 megapixels")
    assert not media.variants.exists()


def test_flac_cover_over_a_lowered_limit_is_refused_and_a_small_one_kept(alice_api, upload, tmp_path, settings):
    settings.MAX_IMAGE_PIXELS = 2_000_000
    big = tmp_path / "big"
    big.mkdir()
    media = uploaded(alice_api, upload, tagged_flac(big, one_colour_png(2000, 1500)))
    assert media.status == Media.Status.READY
    assert media.error == "cover art could not be read: image has 3 megapixels, more than the limit of 2"
    assert not media.variants.exists()

    small = tmp_path / "small"
    small.mkdir()
    media = uploaded(alice_api, upload, tagged_flac(small, one_colour_png(1600, 1200)))  # 1.92 MP
    assert media.status == Media.Status.READY and media.error == ""
    assert set(media.variants.values_list("level", flat=True)) == COVER_LEVELS
    level6 = media.variants.get(level="6")
    assert (level6.width, level6.height) == (1080, 810)
