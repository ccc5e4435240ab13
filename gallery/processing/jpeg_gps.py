"""Where a JPEG keeps its position, so delivery can blank it on the way out.

`gps_patches(head)` reads the metadata segments of a JPEG (everything before the first
scan) and returns the byte ranges that hold a position, with the bytes to write there
instead, of the same length: the EXIF GPS directory (emptied: its entries and the values
they point to become zeros, its count 0) and any XMP packet that mentions GPS (blanked to
spaces). The file keeps its length, so ranges and sizes stay true and the bytes can be
patched as they stream. Orientation, dates and the rest of EXIF stay. None when the head is
not a JPEG whose metadata can be read to the end within it: the caller must then refuse
rather than send a position. Pure: no I/O.
"""

from __future__ import annotations

import struct

XMP_NAMESPACES = (b"http://ns.adobe.com/xap/1.0/\x00", b"http://ns.adobe.com/xmp/extension/\x00")
GPS_IFD_TAG = 0x8825
# Bytes per value of each TIFF type (1 BYTE .. 13 IFD).
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}

Patch = tuple[int, bytes]


def is_jpeg(head: bytes) -> bool:
    return head[:3] == b"\xff\xd8\xff"


def gps_patches(head: bytes) -> list[Patch] | None:
    """(offset, replacement) pairs that remove the position from this JPEG; None if unsure."""
    if not is_jpeg(head):
        return None
    pos, patches = 2, []
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan, end of image: the metadata is behind us
            return patches
        length = struct.unpack(">H", head[pos + 2:pos + 4])[0]
        start, end = pos + 4, pos + 2 + length
        if length < 2 or end > len(head):
            return None
        if marker == 0xE1:
            body = head[start:end]
            try:
                if body.startswith(b"Exif\x00\x00"):
                    patches += _exif_gps(body[6:], start + 6)
                else:
                    patches += _xmp_gps(body, start)
            except (struct.error, ValueError, IndexError):
                return None
        pos = end
    return None


def _xmp_gps(body: bytes, offset: int) -> list[Patch]:
    for namespace in XMP_NAMESPACES:
        if body.startswith(namespace) and b"GPS" in body:
            skip = len(namespace)
            return [(offset + skip, b" " * (len(body) - skip))]
    return []


def _exif_gps(tiff: bytes, offset: int) -> list[Patch]:
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        raise ValueError("not a TIFF header")

    def u16(at: int) -> int:
        return struct.unpack(order + "H", tiff[at:at + 2])[0]

    def u32(at: int) -> int:
        return struct.unpack(order + "I", tiff[at:at + 4])[0]

    ifd0 = u32(4)
    for i in range(u16(ifd0)):
        entry = ifd0 + 2 + 12 * i
        if u16(entry) != GPS_IFD_TAG:
            continue
        gps = u32(entry + 8)
        count = u16(gps)
        entries_end = gps + 2 + 12 * count
        if entries_end > len(tiff):
            raise ValueError("GPS directory past the segment")
        patches = []
        for j in range(count):
            gps_entry = gps + 2 + 12 * j
            size = _TYPE_SIZES.get(u16(gps_entry + 2), 1) * u32(gps_entry + 4)
            if size > 4:  # the value lives elsewhere in the segment: blank it too
                at = u32(gps_entry + 8)
                if at + size > len(tiff):
                    raise ValueError("GPS value past the segment")
                patches.append((offset + at, b"\x00" * size))
        # An empty directory: count 0, entries zeroed (the next-directory link stays).
        patches.append((offset + gps, b"\x00" * (entries_end - gps)))
        return patches
    return []


def apply_patches(chunk: bytes, first: int, patches: list[Patch]) -> bytes:
    """`chunk`, which holds the file's bytes from offset `first`, with the patches applied."""
    last = first + len(chunk)
    touched = [(at, data) for at, data in patches if at < last and at + len(data) > first]
    if not touched:
        return chunk
    buffer = bytearray(chunk)
    for at, data in touched:
        lo, hi = max(at, first), min(at + len(data), last)
        buffer[lo - first:hi - first] = data[lo - at:hi - at]
    return bytes(buffer)
