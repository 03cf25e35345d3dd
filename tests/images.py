"""Bad and odd inputs built in code, for tests of every service."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A tiny PNG whose header claims more pixels than Pillow's decompression-bomb limit allows."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def truncated(jpeg: bytes) -> bytes:
    """The first third of an encoded image."""
    return jpeg[: len(jpeg) // 3]


def solid(value: int, size: int = 300, fmt: str = "JPEG") -> bytes:
    """A uniform grey image."""
    buf = io.BytesIO()
    Image.new("L", (size, size), value).save(buf, fmt)
    return buf.getvalue()
