"""Re-framed and re-scaled copies of validation photos, as another camera would take them (numpy + Pillow).

Used to check that the model is right on more than the data set's own framing: the part filling 70-100 %
of the frame, moved off-centre, or zoomed in until the rim touches the edges (112 %, the largest zoom the
training augmentation shows), the photo saved larger (e.g. 512x512) or smaller, re-encoded as JPEG.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps


@dataclass(frozen=True)
class Variant:
    """One way of re-taking a photo; `fill` > 1 zooms in (a centre crop), < 1 zooms out."""

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
    Variant("zoom112_400", 1.12, 400),
)


def reframe(data: bytes, variant: Variant, seed: int = 0, quality: int = 92) -> bytes:
    """JPEG bytes of the photo at `fill` of a new frame (background noise around it, or a centre crop)."""
    img = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("L")
    if variant.fill > 1.0:
        return _zoom_in(img, variant, quality)
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


def _zoom_in(img: Image.Image, variant: Variant, quality: int) -> bytes:
    """A centre crop of side / fill (moved by `shift`), resized to `out_size`."""
    side = min(img.size)
    crop = round(side / variant.fill)
    left = (img.size[0] - crop) // 2 + round(variant.shift[0] * side)
    top = (img.size[1] - crop) // 2 + round(variant.shift[1] * side)
    left = min(max(left, 0), img.size[0] - crop)
    top = min(max(top, 0), img.size[1] - crop)
    out = img.crop((left, top, left + crop, top + crop))
    out = out.resize((variant.out_size, variant.out_size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
