"""What type and kind of media a file is, decided from its bytes.

The client's Content-Type (multipart, tus `filetype`, direct uploads) and the file name are
claims: a page uploaded as `holiday.png` with type `image/png, text/html` must never be
served as HTML from our origin. So the first bytes decide (`sniff_content_type`); for
formats we cannot recognise, the name's type, then the client's, are hints that are taken
only when they are not something a browser runs (HTML, SVG, XML, script) and not a format
we would have recognised (a `.png` that is not a PNG is not called a PNG). Processing may
still correct the kind later; this decision is made when the media is recorded.
"""

from __future__ import annotations

import mimetypes
import re

from gallery.models import Media

OCTET_STREAM = "application/octet-stream"
# How much of a file sniff_content_type looks at; every signature we know is near the start.
SNIFF_BYTES = 4096

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

# RFC 9110 token "/" token, nothing else: no parameters, lists, spaces or line breaks.
_MEDIA_TYPE = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+/[a-z0-9!#$%&'*+.^_`|~-]+")
_TOP_LEVEL = {"application", "audio", "font", "image", "model", "text", "video"}
# Types a browser renders as a document that can run script or load resources (or that it
# runs as script or style when another page includes them).
_ACTIVE_TYPES = {
    "text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml", "text/xsl",
    "application/xslt+xml", "application/javascript", "text/javascript", "application/ecmascript",
    "text/ecmascript", "application/x-javascript", "text/x-javascript", "text/jscript", "text/livescript",
    "text/css", "application/x-shockwave-flash", "application/vnd.adobe.flash.movie", "text/x-component",
    "application/hta", "text/cache-manifest", "application/wasm",
}
# Words in a subtype that mean the same (xhtml, x-ecmascript, svg-xml...). Not "xml" alone:
# Office files (vnd.openxmlformats-...) are not documents a browser renders.
_ACTIVE_WORDS = ("html", "script", "svg", "xsl")

# ISO base media file format (MP4 family): the `ftyp` brand says which format.
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"}
_HEIF_BRANDS = {b"mif1", b"msf1"}
_M4A_BRANDS = {b"M4A ", b"M4B ", b"M4P "}
# Every type sniff_content_type can answer. A name or a client that claims one of these for
# bytes we did not recognise is wrong, so that claim is not taken.
SNIFFABLE_TYPES = frozenset({
    "image/jpeg", "image/png", "image/gif", "image/webp", "image/avif", "image/heic", "image/heif", "image/bmp",
    "image/tiff", "image/jxl", "video/mp4", "video/quicktime", "video/3gpp", "video/3gpp2", "video/webm",
    "video/x-matroska", "video/ogg", "video/x-msvideo", "video/mp2t", "video/mpeg", "audio/mpeg", "audio/aac",
    "audio/mp4", "audio/ogg", "audio/opus", "audio/wav", "audio/x-wav", "audio/flac", "audio/webm",
    "application/pdf",
})


def clean_media_type(value: str | None) -> str:
    """`value` as a bare lower-case `type/subtype` (parameters dropped), or "" if it is not one.

    A list (`image/png, text/html`), a line break or a character outside ASCII makes it "".
    """
    base = (value or "").split(";", 1)[0].strip().lower()
    if not _MEDIA_TYPE.fullmatch(base) or base.split("/", 1)[0] not in _TOP_LEVEL:
        return ""
    return base


def is_active(content_type: str) -> bool:
    """True for a type a browser may run script in (HTML, SVG, XML, JavaScript, ...)."""
    if content_type in _ACTIVE_TYPES:
        return True
    subtype = content_type.partition("/")[2]
    return subtype == "xml" or subtype.endswith("+xml") or any(word in subtype for word in _ACTIVE_WORDS)


def safe_served_type(stored: str | None) -> str:
    """The Content-Type to send for a stored type: clean and never active, else octet-stream.

    Delivery calls it on the way out, so rows recorded before types were sniffed (or with a
    raw client value) cannot break a header or be rendered as a page.
    """
    content_type = clean_media_type(stored)
    return content_type if content_type and not is_active(content_type) else OCTET_STREAM


def _iso_bmff(head: bytes) -> str | None:
    if head[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(head[0:4], "big")
    major = head[8:12]
    brands = {major} | {head[i:i + 4] for i in range(16, min(max(box_size, 16), len(head)) - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "image/avif"
    if major in _HEIC_BRANDS or (major in _HEIF_BRANDS and brands & _HEIC_BRANDS):
        return "image/heic"
    if major in _HEIF_BRANDS:
        return "image/heif"
    if major in _M4A_BRANDS:
        return "audio/mp4"
    if major == b"qt  ":
        return "video/quicktime"
    if major.startswith(b"3g2"):
        return "video/3gpp2"
    if major.startswith(b"3gp"):
        return "video/3gpp"
    return "video/mp4"  # isom, mp41, mp42, avc1, dash, M4V ... and brands we do not list


def _mpeg_audio(head: bytes) -> str | None:
    if head.startswith(b"ID3"):
        return "audio/mpeg"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # A frame sync; layer bits 00 are ADTS (AAC), anything else MPEG audio (MP3, MP2).
        return "audio/aac" if head[1] & 0x06 == 0 else "audio/mpeg"
    return None


def sniff_content_type(head: bytes) -> str | None:
    """The type of a file from its first bytes (SNIFF_BYTES of them), or None if unknown."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and len(head) >= 12:
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}.get(head[8:12])
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    if head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")):
        return "image/jxl"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    if head.startswith(b"OggS"):
        if b"\x80theora" in head[:256]:
            return "video/ogg"
        return "audio/opus" if b"OpusHead" in head[:256] else "audio/ogg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "video/mpeg"
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return "video/mp2t"
    if head.startswith(b"BM") and len(head) >= 26 and head[14] in (12, 40, 52, 56, 64, 108, 124):
        return "image/bmp"  # "BM", then a DIB header of a known size
    return _iso_bmff(head) or _mpeg_audio(head)


def _type_from_name(filename: str) -> str:
    ext = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return _EXTRA_TYPES.get(ext) or mimetypes.guess_type(filename)[0] or ""


def content_type_for(*, filename: str, declared: str | None, head: bytes) -> str:
    """The one type to store for a file: from its bytes, else a safe hint, else octet-stream.

    `head` is the start of the stored file (SNIFF_BYTES); a TIFF named .dng is a DNG. Without
    a match, the name's then the client's type are used only when they name a format we
    cannot recognise (a .docx, a .txt) and that a browser does not run.
    """
    by_name = clean_media_type(_type_from_name(filename))
    sniffed = sniff_content_type(head)
    if sniffed == "image/tiff" and by_name.startswith("image/") and by_name not in SNIFFABLE_TYPES:
        return by_name  # camera raw formats (DNG, NEF, CR2, ARW...) are TIFF files
    if sniffed:
        return sniffed
    for hint in (by_name, clean_media_type(declared)):
        if hint and hint != OCTET_STREAM and hint not in SNIFFABLE_TYPES and not is_active(hint):
            return hint
    return OCTET_STREAM


def kind_for(content_type: str, filename: str = "") -> str:
    major = content_type.split("/", 1)[0]
    if major in ("image", "video", "audio"):
        return major
    if content_type in _DOCUMENT_TYPES or major == "text":
        return Media.Kind.DOCUMENT
    return Media.Kind.OTHER
