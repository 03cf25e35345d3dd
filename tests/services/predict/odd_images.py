"""Images that made decoding raise something other than InvalidImage (audit 13), built in code."""

from __future__ import annotations

import io
import struct

from PIL import Image


def _tiff(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "TIFF")
    return buf.getvalue()


def cielab_tiff() -> bytes:
    """A valid CIELAB TIFF: the agent accepts TIFF, but Pillow cannot reduce LAB to luminance."""
    return _tiff(Image.new("LAB", (128, 128), (50, 0, 0)))


def absurd_strip_offset_tiff() -> bytes:
    """A TIFF whose strip offset is 2**64 - 1: Pillow's seek raises OverflowError (found by fuzzing)."""
    data = bytearray(_tiff(Image.new("RGB", (64, 64), (120, 120, 120))))
    assert data[:4] == b"II*\x00"
    ifd = struct.unpack_from("<I", data, 4)[0]
    for n in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * n
        if struct.unpack_from("<H", data, entry)[0] == 273:  # StripOffsets
            # Retyped as LONG8, the value no longer fits the entry and is read from the end of the file.
            struct.pack_into("<HII", data, entry + 2, 16, 1, len(data))
            return bytes(data) + b"\xff" * 8
    raise AssertionError("Pillow wrote no StripOffsets")
