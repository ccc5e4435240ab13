"""What kind of media a file is, from its declared type and name.

Processing may correct the kind later from the bytes themselves; this is the first guess
made at upload time, so that videos go to the video queue from the start.
"""

from __future__ import annotations

import mimetypes

from gallery.models import Media

_EXTRA_TYPES = {
    ".heic": "image/heic", ".heif": "image/heif", ".webp": "image/webp", ".avif": "image/avif",
    ".mkv": "video/x-matroska", ".webm": "video/webm", ".m4v": "video/mp4", ".mts": "video/mp2t",
    ".flac": "audio/flac", ".m4a": "audio/mp4", ".opus": "audio/opus", ".ogg": "audio/ogg",
    ".dng": "image/x-adobe-dng",
}
_DOCUMENT_TYPES = {
    "application/pdf", "application/msword", "application/rtf", "application/epub+zip",
    "application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}


def guess_content_type(filename: str, declared: str | None) -> str:
    """The declared type unless it says nothing, else a guess from the name."""
    declared = (declared or "").split(";")[0].strip().lower()
    if declared and declared != "application/octet-stream":
        return declared
    ext = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return _EXTRA_TYPES.get(ext) or mimetypes.guess_type(filename)[0] or "application/octet-stream"


def kind_for(content_type: str, filename: str = "") -> str:
    major = content_type.split("/", 1)[0]
    if major in ("image", "video", "audio"):
        return major
    if content_type in _DOCUMENT_TYPES or major == "text":
        return Media.Kind.DOCUMENT
    return Media.Kind.OTHER
