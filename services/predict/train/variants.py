"""Re-framed and re-scaled copies of validation photos, as another camera would take them (numpy + Pillow).

Used to check that the model is right on more than the data set's own framing: the part filling 70-100 %
of the frame, moved off-centre, or zoomed in until the rim touches the edges (112 %, the largest zoom the
training augmentation shows), the photo saved larger (e.g. 512x512) or smaller, re-encoded as JPEG.
Also small pits on the flange (`flange_spot`; painted by `paint_pit`, or copied from a real pinhole by
`extract_stamp` and `paint_stamp`): the training augmentation can add them, and the post-export checks
measure whether the model sees them.
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


# Where pits go: an annulus in fractions of the half side, in the data set's framing (flange and rims).
PIT_RADIUS = (0.50, 0.82)
_PIT_TAPS = np.arange(-4, 5, dtype=np.float32)


def flange_spot(img: np.ndarray, radius: np.ndarray, angle: np.ndarray) -> tuple[float, float]:
    """Of candidate places (radius as a fraction of the half side, angle in radians), the brightest one.

    Bright means metal (flange, rims), not the dark vanes or the hole, where real pinholes are seen.
    """
    size = img.shape[-1]
    half = size / 2
    cy = half + radius * half * np.sin(angle)
    cx = half + radius * half * np.cos(angle)
    ys = np.clip(np.round(cy).astype(np.int64), 4, size - 5)
    xs = np.clip(np.round(cx).astype(np.int64), 4, size - 5)
    best = int(np.argmax(img[ys, xs]))
    return float(cy[best]), float(cx[best])


def paint_pit(
    img: np.ndarray,
    cy: float,
    cx: float,
    sigma: float,
    depth: float,
    glint: float = 0.0,
    glint_dir: float = 0.0,
) -> None:
    """Darken a Gaussian spot at (cy, cx) by `depth` in place; `glint` adds the highlight of its far wall.

    Sized on a real rim pinhole (cast_def_0_4073: ~3 px wide, 15 % darker than the flange, a faint
    highlight beside it). `img` is a 2-D float array in 0-1; the spot is drawn within 4 px of its centre.
    """
    size = img.shape[-1]
    py = int(np.clip(round(cy), 4, size - 5))
    px = int(np.clip(round(cx), 4, size - 5))
    dy = (_PIT_TAPS - np.float32(cy - py))[:, None]
    dx = (_PIT_TAPS - np.float32(cx - px))[None, :]
    two_s2 = np.float32(2 * sigma**2)
    pit = np.exp(-(dy**2 + dx**2) / two_s2)
    gy = dy - np.float32(2 * sigma * np.sin(glint_dir))
    gx = dx - np.float32(2 * sigma * np.cos(glint_dir))
    shine = np.exp(-(gy**2 + gx**2) / two_s2)
    patch = img[py - 4 : py + 5, px - 4 : px + 5]
    patch *= 1 - np.float32(depth) * pit
    patch *= 1 + np.float32(glint * depth) * shine
    np.clip(patch, 0.0, 1.0, out=patch)


# A real pinhole's stamp: its brightness relative to the surrounding metal, within this radius (px at
# 300 px), faded to nothing over the last 1.5 px so no edge of the window is copied with it.
STAMP_RADIUS = 5


def extract_stamp(img: np.ndarray, cy: int, cx: int, search: int = 4) -> np.ndarray:
    """A real pinhole marked near (cy, cx) of a 2-D 0-1 photo, as (2r+1)^2 relative brightness (0 = none).

    The background is a 9x9 median, which keeps edges (rims, vane shadows) and removes a spot of a few
    pixels; the stamp is centred on the darkest point relative to it within `search` px of the mark.
    """
    r = STAMP_RADIUS
    reach = r + search + 4  # the median's half window beyond the stamp and the search
    size = img.shape[-1]
    if not (reach <= cy < size - reach and reach <= cx < size - reach):
        raise ValueError(f"a pinhole marked at ({cy}, {cx}) lies too close to the edge of a {size} px photo")
    region = img[cy - reach : cy + reach + 1, cx - reach : cx + reach + 1].astype(np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(region, (9, 9))
    background = np.median(windows.reshape(*windows.shape[:2], 81), axis=2)
    rel = region[4:-4, 4:-4] / np.maximum(background, 1e-3) - 1.0  # side 2 * (r + search) + 1
    mid = r + search
    near = rel[mid - search : mid + search + 1, mid - search : mid + search + 1]
    dy, dx = np.unravel_index(int(np.argmin(near)), near.shape)
    py, px = mid - search + int(dy), mid - search + int(dx)
    stamp = rel[py - r : py + r + 1, px - r : px + r + 1]
    taps = np.arange(-r, r + 1, dtype=np.float32)
    dist = np.hypot(taps[:, None], taps[None, :])
    fade = np.clip((r + 0.5 - dist) / 1.5, 0.0, 1.0)
    return (stamp * fade).astype(np.float32)


def paint_stamp(img: np.ndarray, cy: float, cx: float, stamp: np.ndarray, gain: float = 1.0) -> None:
    """Multiply a pinhole stamp (`extract_stamp`) into a 2-D 0-1 photo at (cy, cx) in place, `gain` x deep."""
    r = stamp.shape[0] // 2
    size = img.shape[-1]
    py = int(np.clip(round(cy), r, size - 1 - r))
    px = int(np.clip(round(cx), r, size - 1 - r))
    patch = img[py - r : py + r + 1, px - r : px + r + 1]
    patch *= 1 + np.float32(gain) * stamp
    np.clip(patch, 0.0, 1.0, out=patch)
