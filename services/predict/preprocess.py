"""The one preprocessing function shared by training and inference (numpy + Pillow only, no torch).

`preprocess(data, size)` turns encoded image bytes (JPEG, PNG, BMP or TIFF; any size; RGB, grayscale,
palette or 16-bit; any EXIF orientation) into a `size`x`size` float32 grayscale array in 0-1:

1. decode with Pillow's own limits (a decompression bomb is refused, not decoded);
2. JPEG only: let the decoder scale down by 1/2, 1/4 or 1/8 in the DCT domain while keeping both sides
   at least `size` (cheap, and applied identically in training, so the model learns this exact path);
3. apply the EXIF orientation, reduce to luminance (16-bit input is rescaled, not clipped);
4. centre-crop to a square on the short side (a 4:3 camera frame keeps the part round, never squashed),
   or, for a model trained with a part framing, cut the square round the located part (`framing.py`);
5. resize with Pillow's antialiasing bilinear filter to `size`x`size`, scale to 0-1.

Brightness/contrast normalisation happens inside the model (per-image standardisation), so this array
keeps the real exposure for the image-quality checks in `quality.py`.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from partcheck.errors import InvalidImage
from services.predict.framing import Framing, cut, locate

ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "BMP", "TIFF", "MPO"})
# Anything smaller than this cannot show a casting's pinholes; it is refused rather than upscaled.
MIN_SIDE = 32
# Truncated or corrupt streams surface as any of these depending on the plugin (an absurd TIFF strip
# offset as OverflowError from the seek, a short header field as struct.error).
_CORRUPT = (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, OverflowError, struct.error)


@dataclass(frozen=True)
class Decoded:
    """A decoded grayscale image plus what it was before decoding."""

    image: Image.Image
    format: str
    original_size: tuple[int, int]


def decode(data: bytes, size: int) -> Decoded:
    """Decode bytes to a grayscale, upright Pillow image of at least `size` on its short side if possible."""
    if not data:
        raise InvalidImage("empty image (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; refuse the whole range.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data))
            fmt = str(img.format or "")
            if fmt not in ACCEPTED_FORMATS:
                raise InvalidImage(
                    f"unsupported image format {fmt or 'unknown'!r}; expected JPEG, PNG, BMP or TIFF"
                )
            original = img.size
            if min(original) < MIN_SIDE:
                raise InvalidImage(
                    f"image too small ({original[0]}x{original[1]}); need at least {MIN_SIDE} px"
                )
            if fmt in ("JPEG", "MPO"):
                # draft() keeps both sides >= the request, so the crop below never upsamples.
                img.draft("L", (size, size))
            img.load()
            # In place: the default returns a copy of every photo that needs no turn (the usual case).
            ImageOps.exif_transpose(img, in_place=True)
            gray = _to_gray(img)
    except InvalidImage:
        raise
    except MemoryError:
        # Not a verdict on the bytes: the process is short of memory, so the message must be retried.
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage(f"image refused as a decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImage("not a recognised image file") from exc
    except _CORRUPT as exc:
        raise InvalidImage(f"corrupt or truncated image: {exc}") from exc
    except Exception as exc:
        # Decoding is a pure function of the bytes, so whatever a plugin raises, retrying cannot help;
        # one image must never fail the batch it arrived with.
        raise InvalidImage(f"image cannot be decoded: {type(exc).__name__}: {exc}") from exc
    return Decoded(image=gray, format=fmt, original_size=original)


def _to_gray(img: Image.Image) -> Image.Image:
    """Luminance as 8-bit, rescaling 16/32-bit and float modes instead of clipping them."""
    if img.mode == "L":
        return img
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if img.mode.startswith("I;16") or float(arr.max(initial=0.0)) > 255.0 else 255.0
        if img.mode == "F" and float(arr.max(initial=0.0)) <= 1.0:
            top = 1.0
        scaled = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent areas become white, as a viewer would show them.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("L")
    try:
        if img.mode == "CMYK":
            return img.convert("RGB").convert("L")
        return img.convert("L")
    except ValueError as exc:
        # A valid file in a mode Pillow cannot reduce to luminance (a CIELAB TIFF): the model never saw
        # one, so it is refused with its reason rather than guessed at.
        raise InvalidImage(f"unsupported colour mode {img.mode!r}: {exc}") from exc


def to_array(img: Image.Image, size: int) -> np.ndarray:
    """Centre-crop a grayscale image to a square and resize it to a `size`x`size` float32 array in 0-1."""
    w, h = img.size
    side = min(w, h)
    if w != h:
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if side != size:
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32) * np.float32(1.0 / 255.0)


def preprocess(data: bytes, size: int, framing: Framing | None = None) -> np.ndarray:
    """Encoded image bytes -> `size`x`size` float32 grayscale array in 0-1 (raises InvalidImage).

    With a `framing` (a model card's `input.framing`) the part is located and cut in the framing the
    model was trained on (`framing.py`) instead of taking the centre square.
    """
    img = decode(data, size).image
    if framing is None:
        return to_array(img, size)
    return cut(img, locate(img, framing), size)
