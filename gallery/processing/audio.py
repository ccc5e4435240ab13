"""Audio tags, stream facts and cover art with mutagen (no decoding)."""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass
from typing import Any

import mutagen
from mutagen.flac import Picture

# Front cover in the ID3 / FLAC picture-type table; anything else is a fallback.
_FRONT_COVER = 3

# mutagen file type -> codec name (FFmpeg's spelling, like VideoInfo.audio_codec).
_CODECS = {
    "MP3": "mp3", "EasyMP3": "mp3", "FLAC": "flac", "OggVorbis": "vorbis", "OggOpus": "opus",
    "OggFLAC": "flac", "OggSpeex": "speex", "OggTheora": "theora", "WAVE": "pcm", "AIFF": "pcm",
    "ASF": "wma", "MonkeysAudio": "ape", "WavPack": "wavpack", "TrueAudio": "tta",
    "Musepack": "musepack", "OptimFROG": "optimfrog", "AAC": "aac", "AC3": "ac3", "DSF": "dsd",
    "DSDIFF": "dsd", "SMF": "midi",
}
_MP4_CODECS = {"mp4a.40.2": "aac", "mp4a.40.5": "aac", "mp4a.40.29": "aac", "mp4a.40": "aac",
               "mp4a.6b": "mp3", "mp4a.69": "mp3", "alac": "alac", "ac-3": "ac3", "ec-3": "eac3"}


class AudioError(Exception):
    """The file is not audio we can read; the message is shown as the failure reason."""


@dataclass
class AudioInfo:
    title: str
    artist: str
    album: str
    track: int | None
    duration: float | None  # seconds
    bitrate: int | None  # bits per second
    sample_rate: int | None  # Hz
    codec: str  # "mp3", "aac", "flac", "opus", "vorbis", "pcm", ...
    cover: bytes | None  # embedded picture as stored (JPEG or PNG bytes)


def read_audio(path: str | os.PathLike) -> AudioInfo:
    """Read tags, stream facts and the front cover; raise AudioError if unreadable."""
    try:
        full = mutagen.File(os.fspath(path))
        # The "easy" view maps ID3 frames and MP4 atoms to one set of names ("title", ...).
        easy = mutagen.File(os.fspath(path), easy=True)
    except (mutagen.MutagenError, OSError, ValueError, EOFError, IndexError, KeyError) as exc:
        raise AudioError(f"cannot read the audio file: {exc}") from exc
    if full is None or easy is None:
        raise AudioError("not an audio format we can read")

    info = full.info
    length = getattr(info, "length", None)
    bitrate = getattr(info, "bitrate", None)
    sample_rate = getattr(info, "sample_rate", None)
    codec = _codec(full)
    if sample_rate is None and codec == "opus":
        sample_rate = 48000  # Opus always decodes at 48 kHz; mutagen does not report it
    return AudioInfo(
        title=_tag(easy, "title"),
        artist=_tag(easy, "artist") or _tag(easy, "albumartist"),
        album=_tag(easy, "album"),
        track=_track(_tag(easy, "tracknumber")),
        duration=round(length, 3) if length and length > 0 else None,
        bitrate=int(bitrate) if bitrate and bitrate > 0 else None,
        sample_rate=int(sample_rate) if sample_rate and sample_rate > 0 else None,
        codec=codec,
        cover=_cover(full),
    )


# Formats without an "easy" view (WAV/AIFF carry ID3, WMA carries ASF attributes).
_FALLBACK_KEYS = {
    "title": ("TIT2", "Title"), "artist": ("TPE1", "Author"), "albumartist": ("TPE2", "WM/AlbumArtist"),
    "album": ("TALB", "WM/AlbumTitle"), "tracknumber": ("TRCK", "WM/TrackNumber"),
}


def _tag(easy: Any, key: str) -> str:
    if easy.tags is None:
        return ""
    values = None
    for name in (key, *_FALLBACK_KEYS.get(key, ())):
        try:
            values = easy.tags.get(name)
        except (KeyError, ValueError, TypeError):
            values = None
        if values:
            break
    if not values:
        return ""
    value = values[0] if isinstance(values, list) else values
    text = value.text[0] if hasattr(value, "text") and value.text else value  # ID3 frame
    return str(getattr(text, "value", text)).replace("\x00", "").strip()  # ASF attribute


def _track(text: str) -> int | None:
    match = re.match(r"\s*(\d+)", text)  # "3", "03", "3/12"
    return int(match.group(1)) if match and 0 < int(match.group(1)) < 100_000 else None


def _codec(full: Any) -> str:
    name = type(full).__name__
    if name in ("MP4", "EasyMP4"):
        codec = getattr(full.info, "codec", "") or ""
        return _MP4_CODECS.get(codec, codec.split(".")[0] or "mp4")
    return _CODECS.get(name, name.lower())


def _cover(full: Any) -> bytes | None:
    tags = full.tags
    pictures: list[tuple[int, bytes]] = []  # (picture type, data)
    # FLAC keeps pictures in their own metadata blocks, not in the tags.
    for picture in getattr(full, "pictures", None) or []:
        pictures.append((picture.type, picture.data))
    if tags is not None:
        if hasattr(tags, "getall"):  # ID3 (MP3, and WAV/AIFF with an ID3 chunk)
            pictures += [(frame.type, frame.data) for frame in tags.getall("APIC")]
        if "covr" in tags:  # MP4: no picture types, the first one is the cover
            pictures += [(_FRONT_COVER, bytes(cover)) for cover in tags["covr"]]
        for encoded in _vorbis_values(tags, "metadata_block_picture"):
            try:
                picture = Picture(base64.b64decode(encoded))
            except (binascii.Error, ValueError, mutagen.MutagenError):
                continue  # one broken picture must not hide the rest of the tags
            pictures.append((picture.type, picture.data))
    pictures = [(kind, data) for kind, data in pictures if data]
    if not pictures:
        return None
    return next((data for kind, data in pictures if kind == _FRONT_COVER), pictures[0][1])


def _vorbis_values(tags: Any, key: str) -> list[str]:
    # Vorbis comments (Ogg Vorbis/Opus) are case-insensitive key -> list of strings.
    try:
        return list(tags.get(key) or []) if hasattr(tags, "get") and not hasattr(tags, "getall") else []
    except (KeyError, ValueError, TypeError):
        return []
