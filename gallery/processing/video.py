"""Video probing, posters, fast-start remuxing and WebM transcoding with PyAV.

Pure functions on local paths; the caller moves files to and from storage.

Frames larger than `max_pixels` (the pipeline passes MAX_IMAGE_PIXELS, the images' rule)
are refused before one is decoded: FFmpeg decodes a frame or more while it opens a file,
so the sizes the container and the codec headers declare are read first with no decoder
allowed, and every decoder opened afterwards is itself limited (FFmpeg's `max_pixels`)
in case the frames are larger than declared. Posters are scaled down while converted to
RGB, so no full-size RGB copy of a frame is made.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from fractions import Fraction
from typing import Iterator

import av
import av.error
from av.container import InputContainer, OutputContainer
from av.video.stream import VideoStream
from PIL import Image

from gallery.processing.images import working_size

# What every current browser plays in a <video> tag without a transcode.
_BROWSER_VIDEO = {"h264", "vp8", "vp9", "av1"}
_BROWSER_AUDIO = {None, "aac", "mp3", "opus", "vorbis", "flac"}
_BROWSER_CONTAINERS = {"mp4", "mov", "webm"}
# Browsers decode 8-bit 4:2:0 H.264 only; 10-bit or 4:2:2 (some cameras) must be transcoded.
_BROWSER_H264_PIXFMTS = {"yuv420p", "yuvj420p", "nv12", ""}

# ISO-BMFF brands of HEIC/HEIF/AVIF stills, which FFmpeg's mov demuxer also opens.
_IMAGE_BRANDS = {"heic", "heix", "heim", "heis", "mif1", "msf1", "avif", "avis"}

# Pillow's ROTATE_n turns counter-clockwise; VideoInfo.rotation is clockwise.
_CLOCKWISE = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}

POSTER_AT_SECONDS = 1.0
SHORT_CLIP_SECONDS = 10.0
# The default of render_variants(); the pipeline passes settings.MAX_IMAGE_PIXELS.
DEFAULT_MAX_PIXELS = 100_000_000
# Frame-threaded decoding (the WebM transcode) holds a frame per thread: above this many
# pixels in flight, fewer threads.
_THREADED_DECODE_PIXELS = 64_000_000


class VideoError(Exception):
    """The file is not a playable video; the message is shown as the failure reason."""


@dataclass
class VideoInfo:
    duration: float | None  # seconds
    width: int  # display size: after rotation and pixel aspect ratio
    height: int
    fps: float | None
    rotation: int  # degrees clockwise to turn stored frames upright: 0, 90, 180 or 270
    video_codec: str  # FFmpeg codec name: "h264", "hevc", "vp9", "mpeg4", ...
    audio_codec: str | None
    container: str  # "mp4", "mov", "webm", "mkv", "avi", "asf", ... (our short name)
    bitrate: int | None  # bits per second, whole file
    pixel_format: str = ""  # "yuv420p", "yuv420p10le", ...
    created_at: datetime | None = None  # aware; when the camera recorded it, if it says
    latitude: float | None = None  # from the ISO 6709 location phones write, if any
    longitude: float | None = None


def probe_video(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> VideoInfo:
    """Read stream facts and decode the first frame; raise VideoError if that fails or
    if frames have more than `max_pixels`."""
    with _open(path, max_pixels) as container:
        stream = _video_stream(container)
        audio = next(iter(container.streams.audio), None)
        try:
            first = next(_frames(container, stream, max_pixels), None)
        except VideoError:
            raise
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise VideoError(f"cannot decode the video: {exc}") from exc
        if first is None:
            raise VideoError("the video has no decodable frame (truncated or damaged file)")

        rotation = round(-(first.rotation or 0) / 90) * 90 % 360
        width, height = _display_size(stream, first.width, first.height)
        if rotation in (90, 270):
            width, height = height, width
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(
            duration=_duration(container, stream),
            width=width,
            height=height,
            fps=round(float(rate), 3) if rate else None,
            rotation=rotation,
            video_codec=stream.codec_context.name,
            audio_codec=audio.codec_context.name if audio is not None else None,
            container=_container_name(container, stream, audio),
            bitrate=container.bit_rate or None,
            pixel_format=stream.codec_context.pix_fmt or "",
            created_at=_created_at(container.metadata),
            **_location(container.metadata),
        )


def extract_poster(path: str | os.PathLike, info: VideoInfo, *,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An upright RGB frame at 1 s, or at 10 % of a clip shorter than ~10 s, no larger than
    the image levels need (images.working_size)."""
    if info.duration is not None and info.duration < SHORT_CLIP_SECONDS:
        at = info.duration * 0.1
    else:
        at = POSTER_AT_SECONDS
    with _open(path, max_pixels) as container:
        stream = _video_stream(container)
        frame = None
        try:
            if at > 0 and stream.time_base:
                # Seek lands on the keyframe before `at`; decode forward from there.
                container.seek(int(at / stream.time_base), stream=stream, backward=True)
            for frame in _frames(container, stream, max_pixels):
                if frame.time is None or frame.time >= at:
                    break
        except VideoError:
            raise
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            if frame is None:
                raise VideoError(f"cannot decode a poster frame: {exc}") from exc
        if frame is None:
            # Seeking past the last keyframe of a short or odd file: take the first frame.
            container.seek(0)
            frame = next(_frames(container, stream, max_pixels), None)
        if frame is None:
            raise VideoError("the video has no decodable frame (truncated or damaged file)")
        # One swscale pass converts to RGB, corrects anamorphic pixels and shrinks: a full
        # size RGB copy of an 8K frame alone would be 100 MB.
        width, height = working_size(*_display_size(stream, frame.width, frame.height))
        try:
            image = frame.to_image(width=width, height=height, interpolation="BICUBIC")
        except (av.error.FFmpegError, ValueError) as exc:
            raise VideoError(f"cannot convert the poster frame: {exc}") from exc
    turn = _CLOCKWISE.get(info.rotation)
    return image.transpose(turn) if turn is not None else image


def needs_faststart(path: str | os.PathLike) -> bool:
    """True for an MP4/MOV whose index (moov) comes after the media data (mdat)."""
    order = [kind for kind in _top_level_atoms(path) if kind in (b"moov", b"mdat")]
    return bool(order) and order[0] == b"mdat" and b"moov" in order


def remux_faststart(src: str | os.PathLike, dst: str | os.PathLike, *,
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Copy audio and video packets into a new MP4/MOV with moov first; no re-encoding.

    Data tracks (timecode, Apple metadata) are dropped: the mp4 muxer cannot copy most of them.
    """
    with _open(src, max_pixels) as source:
        video = _video_stream(source)
        streams = [video, *source.streams.audio]
        fmt = "mov" if _container_name(source, video, None) == "mov" else "mp4"
        try:
            with av.open(os.fspath(dst), "w", format=fmt, options={"movflags": "faststart"}) as out:
                out.metadata.update(source.metadata)
                mapping = {s.index: out.add_stream_from_template(s) for s in streams}
                for packet in source.demux(streams):
                    if packet.dts is None:
                        continue  # demuxer's end-of-stream marker, not data
                    packet.stream = mapping[packet.stream.index]
                    out.mux(packet)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise VideoError(f"cannot remux the video: {exc}") from exc


def transcode_webm(src: str | os.PathLike, dst: str | os.PathLike, *, max_height: int = 1080,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Re-encode to VP9 + Opus WebM, upright, at most `max_height` lines tall."""
    info = probe_video(src, max_pixels=max_pixels)
    with _open(src, max_pixels) as source:
        video = _video_stream(source)
        audio = next(iter(source.streams.audio), None)
        video.thread_type = "AUTO"
        cpus = max(1, min(8, os.cpu_count() or 1))
        video.codec_context.thread_count = max(1, min(cpus, _THREADED_DECODE_PIXELS // (info.width * info.height)))
        try:
            with av.open(os.fspath(dst), "w", format="webm") as out:
                rate = video.average_rate or video.guessed_rate or Fraction(30)
                height = min(max_height, info.height)
                width = max(2, round(info.width * height / info.height / 2) * 2)
                height = max(2, height // 2 * 2)
                v_out = out.add_stream("libvpx-vp9", rate=rate)
                v_out.width, v_out.height, v_out.pix_fmt = width, height, "yuv420p"
                # Keep the source's clock: phones record variable frame rates, and rounding
                # their timestamps to 1/fps would collide and stop the encoder.
                v_out.codec_context.time_base = video.time_base
                v_out.codec_context.options = {
                    # Realtime presets make VP9 usable on a home server's CPU; crf keeps
                    # quality constant instead of chasing a bitrate.
                    "deadline": "realtime", "cpu-used": "8", "row-mt": "1",
                    "crf": "32", "b": "0", "lag-in-frames": "0",
                }
                v_out.codec_context.thread_count = max(1, min(8, os.cpu_count() or 1))
                a_out = None
                if audio is not None:
                    a_out = out.add_stream("libopus", rate=48000)
                    a_out.codec_context.bit_rate = 128_000
                graph = _upright_scale_graph(video, info.rotation, width, height)
                resampler = av.AudioResampler(format="s16", layout="stereo", rate=48000) if a_out else None

                wanted = [video] + ([audio] if audio is not None else [])
                for packet in source.demux(wanted):
                    try:
                        frames = packet.decode()
                    except av.error.InvalidDataError:
                        continue  # one damaged packet must not lose the whole video
                    except av.error.ArgumentError as exc:
                        if packet.stream.type == "video":
                            raise _frame_too_large(exc, max_pixels) from exc
                        raise
                    for frame in frames:
                        if packet.stream.type == "video":
                            graph.push(frame)
                            _mux_all(out, v_out, _pull(graph))
                        elif a_out is not None and resampler is not None:
                            frame.pts = None  # let the resampler and encoder count samples
                            for resampled in resampler.resample(frame):
                                out.mux(a_out.encode(resampled))
                graph.push(None)
                _mux_all(out, v_out, _pull(graph))
                out.mux(v_out.encode(None))
                if a_out is not None and resampler is not None:
                    for resampled in resampler.resample(None):
                        out.mux(a_out.encode(resampled))
                    out.mux(a_out.encode(None))
        except VideoError:
            raise
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise VideoError(f"cannot transcode the video: {exc}") from exc


def browser_playable(info: VideoInfo) -> bool:
    """Whether browsers play the original as is (else we serve a WebM transcode)."""
    if info.container not in _BROWSER_CONTAINERS or info.video_codec not in _BROWSER_VIDEO:
        return False
    if info.audio_codec not in _BROWSER_AUDIO:
        return False
    return info.video_codec != "h264" or info.pixel_format in _BROWSER_H264_PIXFMTS


def _open(path: str | os.PathLike, max_pixels: int) -> InputContainer:
    """Open a file whose declared frames have at most `max_pixels`, every decoder limited."""
    _check_declared_size(path, max_pixels)
    limit = {"max_pixels": str(_decoder_pixel_limit(max_pixels))}
    try:
        # `options` reach the decoders avformat_find_stream_info opens to learn the pixel
        # format (PyAV passes them when the container lists its streams in a header: MP4,
        # MOV, Matroska, AVI...). An MPEG-TS/PS shows its streams only while probing; the
        # check above then rests on the sizes its parsers read from the codec headers.
        container = av.open(os.fspath(path), metadata_errors="replace", options=limit)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"not a video we can read: {exc}") from exc
    for stream in container.streams.video:
        if stream.codec_context is not None:
            stream.codec_context.options = dict(limit)  # applied when the decoder opens
    return container


def _check_declared_size(path: str | os.PathLike, max_pixels: int) -> None:
    """Refuse frames larger than `max_pixels` from the sizes the container and the codec
    headers declare, decoding nothing: no decoder may open (codec_whitelist "none"), so
    avformat_find_stream_info stops at the container and the codec parsers."""
    try:
        with av.open(os.fspath(path), metadata_errors="replace",
                     container_options={"codec_whitelist": "none"}) as container:
            sizes = [(s.codec_context.width, s.codec_context.height) for s in container.streams.video
                     if s.codec_context is not None]
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"not a video we can read: {exc}") from exc
    for width, height in sizes:
        if width * height > max_pixels:
            raise VideoError(
                f"video frames have {width * height / 1e6:.0f} megapixels ({width}x{height}), "
                f"more than the limit of {max_pixels / 1e6:.0f}"
            )


def _decoder_pixel_limit(max_pixels: int) -> int:
    # FFmpeg counts a frame's rows padded to its stride alignment (up to 64 pixels), so a
    # frame exactly at the limit needs a little slack; larger lies are still refused.
    return max_pixels + max_pixels // 16


def _frame_too_large(exc: Exception, max_pixels: int) -> VideoError:
    # With max_pixels set, a decoder that meets a frame larger than the limit cannot get a
    # buffer for it and returns EINVAL: the size the headers declared was a lie.
    return VideoError(
        f"cannot decode a video frame: it is larger than the file declares, over the limit of "
        f"{max_pixels / 1e6:.0f} megapixels, or damaged ({exc})"
    )


def _video_stream(container: InputContainer) -> VideoStream:
    fmt = container.format.name
    if fmt == "image2" or fmt.endswith("_pipe") or fmt in ("gif", "webp", "apng"):
        # FFmpeg happily opens a JPEG or a GIF as a one-frame "video": not ours to handle.
        raise VideoError(f"the file is an image ({fmt}), not a video")
    brand = (container.metadata.get("major_brand") or "").strip().lower()
    if brand in _IMAGE_BRANDS:
        raise VideoError(f"the file is a HEIF/AVIF image ({brand}), not a video")
    # Cover art in audio files shows up as a one-frame "video" stream: not a video.
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        raise VideoError("the file has no video stream")
    return streams[0]


def _frames(container: InputContainer, stream: VideoStream, max_pixels: int) -> Iterator[av.VideoFrame]:
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            continue  # a damaged packet before the first good frame is survivable
        except av.error.ArgumentError as exc:
            raise _frame_too_large(exc, max_pixels) from exc
        yield from frames


def _duration(container: InputContainer, stream: VideoStream) -> float | None:
    if container.duration:
        return round(container.duration / av.time_base, 3)
    if stream.duration and stream.time_base:
        return round(float(stream.duration * stream.time_base), 3)
    return None


def _display_size(stream: VideoStream, width: int, height: int) -> tuple[int, int]:
    sar = stream.sample_aspect_ratio
    if sar and sar.numerator > 0 and sar != 1:
        return max(1, round(width * sar)), height
    return width, height


def _container_name(container: InputContainer, video: VideoStream, audio) -> str:
    names = container.format.name.split(",")
    if "mov" in names:
        brand = (container.metadata.get("major_brand") or "").strip().lower()
        if brand == "qt":
            return "mov"
        if brand.startswith("3g"):
            return "3gp"
        return "mp4"
    if "matroska" in names:
        # FFmpeg reads both as "matroska,webm"; WebM is Matroska restricted to these codecs.
        audio_codec = audio.codec_context.name if audio is not None else None
        webm = video.codec_context.name in ("vp8", "vp9", "av1") and audio_codec in (None, "opus", "vorbis")
        return "webm" if webm else "mkv"
    return names[0]


def _created_at(metadata: dict[str, str]) -> datetime | None:
    # Apple's key keeps the local offset ("2021-04-11T15:47:53-0500"); creation_time is
    # UTC but often the muxing time of an editor, so it comes second.
    for key in ("com.apple.quicktime.creationdate", "creation_time"):
        text = (metadata.get(key) or "").strip()
        if not text:
            continue
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        if moment.year >= 1990:  # 1904/1970 epochs mean "not set"
            return moment
    return None


_ISO6709 = re.compile(r"^([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)")


def _location(metadata: dict[str, str]) -> dict[str, float]:
    text = metadata.get("com.apple.quicktime.location.ISO6709") or metadata.get("location") or ""
    match = _ISO6709.match(text.strip())
    if not match:
        return {}
    lat, lon = float(match.group(1)), float(match.group(2))
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat == 0 and lon == 0):
        return {}
    return {"latitude": lat, "longitude": lon}


def _top_level_atoms(path: str | os.PathLike) -> Iterator[bytes]:
    """Yield the types of an ISO-BMFF file's top-level boxes, reading only their headers."""
    with open(path, "rb") as fh:
        size_total = os.fstat(fh.fileno()).st_size
        offset = 0
        for _ in range(10_000):
            fh.seek(offset)
            header = fh.read(8)
            if len(header) < 8:
                return
            size, kind = struct.unpack(">I4s", header)
            if offset == 0 and kind not in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
                return  # not MP4/MOV at all
            if size == 1:  # 64-bit size follows the type
                large = fh.read(8)
                if len(large) < 8:
                    return
                size = struct.unpack(">Q", large)[0]
            elif size == 0:  # box runs to the end of the file
                size = size_total - offset
            yield kind
            if size < 8:
                return  # corrupt: a box cannot be smaller than its header
            offset += size


def _upright_scale_graph(stream: VideoStream, rotation: int, width: int, height: int) -> av.filter.Graph:
    graph = av.filter.Graph()
    nodes = [graph.add_buffer(template=stream)]
    turn = {90: [("transpose", "clock")], 180: [("hflip", ""), ("vflip", "")], 270: [("transpose", "cclock")]}
    for name, args in turn.get(rotation, []):
        nodes.append(graph.add(name, args))
    nodes.append(graph.add("scale", f"{width}:{height}"))
    nodes.append(graph.add("format", "yuv420p"))
    nodes.append(graph.add("buffersink"))
    graph.link_nodes(*nodes).configure()
    return graph


def _pull(graph: av.filter.Graph) -> Iterator[av.VideoFrame]:
    while True:
        try:
            yield graph.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            return


def _mux_all(out: OutputContainer, stream, frames: Iterator[av.VideoFrame]) -> None:
    for frame in frames:
        out.mux(stream.encode(frame))
