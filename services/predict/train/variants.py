"""Re-framed and re-scaled copies of validation photos, as another camera would take them (numpy + Pillow).

Used to check that the model is right on more than the data set's own framing: the part filling 70-100 %
of the frame, moved off-centre, the photo saved larger (e.g. 512x512) or smaller, re-encoded as JPEG.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps


@dataclass(frozen=True)
class Variant:
    """One way of re-taking a photo."""

    name: str
    fill: float
    out_size: int
    shift: tuple[float, float] = (0.0, 0.0)


VARIANTS = (
    Variant("fill100_512", 1.0, 512),
    Variant("fill85_512", 0.85, 512),
    Variant("fill70_512", 0.70, 512),
    Variant("fill85_224_shift", 0.85, 224, (0.06, -0.04)),
    Variant("fill70_640_shift", 0.70, 640, (-0.08, 0.05)),
)


def reframe(data: bytes, variant: Variant, seed: int = 0, quality: int = 92) -> bytes:
    """JPEG bytes of the photo shrunk to `fill` of a new frame of plain background, resized to `out_size`."""
    img = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("L")
    arr = np.asarray(img, dtype=np.float32)
    ring = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    side = max(arr.shape)
    canvas_side = round(side / variant.fill)
    rng = np.random.default_rng(seed)
    canvas = rng.normal(float(np.median(ring)), float(ring.std()) * 0.5, (canvas_side, canvas_side))
    top = (canvas_side - arr.shape[0]) // 2 + round(variant.shift[1] * canvas_side)
    left = (canvas_side - arr.shape[1]) // 2 + round(variant.shift[0] * canvas_side)
    top = min(max(top, 0), canvas_side - arr.shape[0])
    left = min(max(left, 0), canvas_side - arr.shape[1])
    canvas[top : top + arr.shape[0], left : left + arr.shape[1]] = arr
    out = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    out = out.resize((variant.out_size, variant.out_size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
