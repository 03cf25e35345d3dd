"""Find the part in the frame and cut the square the model was trained on (numpy + Pillow only).

A camera on another line frames the part differently: smaller, larger, off centre. A network trained on
one framing is least sure of the others (session 13: 6-7 % of shrunk or shifted copies unclear against
3.6 % of the photos as taken). So the part is located first and brought to the training framing:

1. a view of at most `VIEW` px on its long side;
2. the centre: the point the lines along the strongest edges' gradients pass closest to (a circle's
   edges all point at its centre; this part's rims are concentric circles), in robust least squares;
3. the scale: the mean radial edge strength at each radius round that centre is matched (Pearson
   correlation) against the same profile of training photos in their own framing, over a range of frame
   sides; the best match gives the side of the square to cut;
4. that square is cut from the decoded image (padded with the frame's border brightness where it leaves
   the frame): as it is when its side is within 8 % of the model's input, else resized with Pillow's
   antialiasing bilinear filter.

The template belongs to the part type: it is fitted on training photos (`fit`) and stored in the model
card, so a model and the framing it expects travel together.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

METHOD = "radial-edge-profile-v1"
VIEW = 72
# Radius samples of the profile, as fractions of the frame side; the part's outer rim is near 0.4.
RHO = np.linspace(0.0, 0.75, 76)
# Frame sides tried, relative to the view's short side: a part from 45 % to 160 % of the training size.
_SIDES = np.exp(np.linspace(np.log(0.45), np.log(1.6), 96))
_EDGE_QUANTILE = 0.9
# Centre: lines further than this share of the view's side from the estimate count less; rounds of it.
_LINE_SIGMA = 0.04
# A square this close to the model's input side is cut as it is (see `cut`).
SNAP = 0.08
_ROUNDS = 4


@dataclass(frozen=True)
class Framing:
    """The training framing of a part type: its radial edge profile over `RHO`."""

    template: tuple[float, ...]
    method: str = METHOD

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Framing:
        """From a model card's `input.framing`; refuses a method this code does not implement."""
        if data.get("method") != METHOD:
            raise ValueError(f"unknown framing method {data.get('method')!r}; this code has {METHOD!r}")
        template = tuple(float(v) for v in data["template"])
        if len(template) != len(RHO) or not np.all(np.isfinite(template)):
            raise ValueError(f"framing template must be {len(RHO)} finite numbers")
        return cls(template=template)

    def to_dict(self) -> dict[str, Any]:
        """For the model card."""
        return {"method": self.method, "template": list(self.template)}


@dataclass(frozen=True)
class Placement:
    """The square to cut, in pixels of the decoded image: centre and side."""

    cy: float
    cx: float
    side: float


def _view(img: Image.Image) -> tuple[np.ndarray, float]:
    """A float32 view of at most VIEW px on the long side, and its scale against the image."""
    w, h = img.size
    factor = max(1, int(np.ceil(max(w, h) / VIEW)))
    small = img.reduce(factor) if factor > 1 else img
    # reduce() averages `factor`-px boxes from the top-left (the last one partial): its pixels are `factor`
    # apart whatever its rounded-up size, so the scale is 1/factor, not its width over the image's.
    return np.asarray(small, dtype=np.float32), 1.0 / factor


def _sobel(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel derivatives (zero on the border)."""
    dy = np.zeros_like(a)
    dx = np.zeros_like(a)
    dy[1:-1] = a[2:] - a[:-2]
    dx[:, 1:-1] = a[:, 2:] - a[:, :-2]
    gy = np.zeros_like(a)
    gx = np.zeros_like(a)
    gy[:, 1:-1] = dy[:, :-2] + 2 * dy[:, 1:-1] + dy[:, 2:]
    gx[1:-1] = dx[:-2] + 2 * dx[1:-1] + dx[2:]
    return gy, gx


def _centre(gy: np.ndarray, gx: np.ndarray, mag: np.ndarray) -> tuple[float, float] | None:
    """The point the strong edges' gradient lines pass closest to (robust least squares), or None.

    A circle's edges all point at its centre and this part's rims are concentric circles; texture and
    flash point anywhere, so lines far from the current estimate lose weight on each round.
    """
    h, w = mag.shape
    k = int(_EDGE_QUANTILE * mag.size)
    threshold = float(np.partition(mag.ravel(), k)[k])
    ys, xs = np.nonzero(mag > max(threshold, 1e-6))
    if len(ys) < 3:
        return None
    m = mag[ys, xs].astype(np.float64)
    # The line through (x, y) along the gradient has normal (-uy, ux): distance n . c - b.
    nx = -gy[ys, xs] / m
    ny = gx[ys, xs] / m
    b = nx * xs + ny * ys
    sigma = _LINE_SIGMA * min(h, w)
    weight = m
    centre = None
    for _ in range(_ROUNDS):
        a11, a12, a22 = (weight * nx * nx).sum(), (weight * nx * ny).sum(), (weight * ny * ny).sum()
        r1, r2 = (weight * nx * b).sum(), (weight * ny * b).sum()
        det = a11 * a22 - a12 * a12
        if det <= 1e-9 * max(a11 * a22, 1e-12):
            return None  # all lines parallel: straight edges, no circle
        cx = (a22 * r1 - a12 * r2) / det
        cy = (a11 * r2 - a12 * r1) / det
        centre = (float(cy), float(cx))
        off = (nx * cx + ny * cy - b) / sigma
        weight = m / (1.0 + off * off)
    if centre is None or not (-0.5 * h < centre[0] < 1.5 * h and -0.5 * w < centre[1] < 1.5 * w):
        return None
    return centre


def _profile(gy: np.ndarray, gx: np.ndarray, cy: float, cx: float) -> np.ndarray:
    """Mean |radial gradient| at each whole radius (in view pixels) round (cy, cx); NaN where none."""
    h, w = gy.shape
    yy = np.arange(h, dtype=np.float32)[:, None] - np.float32(cy)
    xx = np.arange(w, dtype=np.float32)[None, :] - np.float32(cx)
    r = np.sqrt(yy * yy + xx * xx) + np.float32(1e-6)
    radial = np.abs(gx * xx + gy * yy) / r
    ri = r.astype(np.int64).ravel()
    n_bins = int(ri.max()) + 1
    sums = np.bincount(ri, weights=radial.ravel(), minlength=n_bins)
    counts = np.bincount(ri, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def _normalised(profile: np.ndarray, side: float) -> np.ndarray:
    """A profile resampled over RHO for a frame of `side` view pixels, scaled to a maximum of 1."""
    r = np.arange(len(profile)) / side
    ok = ~np.isnan(profile)
    out: np.ndarray = np.interp(RHO, r[ok], profile[ok], right=np.nan)
    top = float(np.nanmax(out)) if np.any(~np.isnan(out)) else 0.0
    return out / top if top > 0 else out


@functools.lru_cache(maxsize=32)
def _template_table(template: tuple[float, ...], short: int, n_radii: int) -> np.ndarray:
    """The template at each radius 0..n_radii-1 for every frame side tried: (len(_SIDES), n_radii)."""
    radii = np.arange(n_radii, dtype=np.float64)
    sides = _SIDES * short
    rho = radii[None, :] / sides[:, None]
    table: np.ndarray = np.interp(rho, RHO, np.asarray(template), right=np.nan)
    return table


def _side(profile: np.ndarray, framing: Framing, short: int) -> float | None:
    """The frame side (view pixels) whose template best matches the profile, or None."""
    table = _template_table(framing.template, short, len(profile))
    valid = ~np.isnan(table) & ~np.isnan(profile)[None, :]
    n = valid.sum(1)
    t = np.where(valid, table, 0.0)
    p = np.where(valid, profile[None, :], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        tm = t.sum(1) / n
        pm = p.sum(1) / n
        cov = (t * p).sum(1) / n - tm * pm
        var_t = (t * t).sum(1) / n - tm * tm
        var_p = (p * p).sum(1) / n - pm * pm
        corr = cov / np.sqrt(var_t * var_p)
    # A match on a few inner radii only is no match: the rim must be inside what was compared.
    rho_seen = (n - 1) / (_SIDES * short)
    # -inf, not nan_to_num: that turns -inf into the lowest finite float, and a side that matched nothing
    # would then be taken as the best match instead of falling back.
    corr = np.where((n >= 8) & (rho_seen >= 0.45) & np.isfinite(corr), corr, -np.inf)
    best = int(np.argmax(corr))
    return None if not np.isfinite(corr[best]) else float(_SIDES[best] * short)


def _measure(img: Image.Image) -> tuple[tuple[float, float], np.ndarray, int, float] | None:
    """On the view of `img`: the part's centre, its radial edge profile, the view's short side and its
    scale against the image; None without a centre."""
    a, scale = _view(img)
    gy, gx = _sobel(a)
    centre = _centre(gy, gx, np.sqrt(gy * gy + gx * gx))
    if centre is None:
        return None
    return centre, _profile(gy, gx, *centre), min(a.shape), scale


def locate(img: Image.Image, framing: Framing) -> Placement:
    """Where the part is in a grayscale image; the centre square of the short side if none is found."""
    w, h = img.size
    fallback = Placement(cy=(h - 1) / 2, cx=(w - 1) / 2, side=float(min(w, h)))
    measured = _measure(img)
    if measured is None:
        return fallback
    centre, profile, short, scale = measured
    side = _side(profile, framing, short)
    if side is None:
        return fallback
    # View pixel centres sit `scale` apart; (0, 0) of the view covers the image's first 1/scale pixels.
    to_image = 1.0 / scale
    return Placement(
        cy=(centre[0] + 0.5) * to_image - 0.5,
        cx=(centre[1] + 0.5) * to_image - 0.5,
        side=side * to_image,
    )


def _border_fill(a: np.ndarray) -> int:
    """The median brightness of the frame's border: the least surprising guess for outside the frame."""
    return int(np.median(np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])))


def cut(img: Image.Image, where: Placement, size: int) -> np.ndarray:
    """The square `where` of a grayscale image as a `size`x`size` float32 array in 0-1.

    A square within `SNAP` of `size` is cut without resampling: a bilinear shift by half a pixel would
    average a 2-3 px pinhole with its surroundings, and the model tolerates a few per cent of scale.
    """
    w, h = img.size
    a = np.asarray(img)
    if abs(where.side / size - 1.0) <= SNAP:
        top = round(where.cy - (size - 1) / 2)
        left = round(where.cx - (size - 1) / 2)
        if top >= 0 and left >= 0 and top + size <= h and left + size <= w:
            out = a[top : top + size, left : left + size]
        else:
            out = np.full((size, size), _border_fill(a), dtype=np.uint8)
            y0, x0 = max(top, 0), max(left, 0)
            y1, x1 = min(top + size, h), min(left + size, w)
            if y1 > y0 and x1 > x0:
                out[y0 - top : y1 - top, x0 - left : x1 - left] = a[y0:y1, x0:x1]
        return out.astype(np.float32) * np.float32(1.0 / 255.0)
    half = where.side / 2
    box = (where.cx + 0.5 - half, where.cy + 0.5 - half, where.cx + 0.5 + half, where.cy + 0.5 + half)
    pad = int(np.ceil(max(0.0, -box[0], -box[1], box[2] - w, box[3] - h)))
    if pad:
        # The frame padded by `pad` on every side, but only the box and the filter's reach round it: the
        # whole padded frame is up to ~13x its pixels (a centre half a frame out, a side of 1.6 frames).
        reach = int(np.ceil(max(where.side / size, 1.0))) + 2
        x0, y0 = max(int(np.floor(box[0])) - reach, -pad), max(int(np.floor(box[1])) - reach, -pad)
        x1, y1 = min(int(np.ceil(box[2])) + reach, w + pad), min(int(np.ceil(box[3])) + reach, h + pad)
        canvas = Image.new("L", (x1 - x0, y1 - y0), _border_fill(a))
        inside = (max(x0, 0), max(y0, 0), min(x1, w), min(y1, h))
        if inside[2] > inside[0] and inside[3] > inside[1]:
            canvas.paste(img.crop(inside), (inside[0] - x0, inside[1] - y0))
        img = canvas
        box = (box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0)
    resized = img.resize((size, size), Image.Resampling.BILINEAR, box=box)
    return np.asarray(resized, dtype=np.float32) * np.float32(1.0 / 255.0)


def fit(images: Iterable[Image.Image]) -> Framing:
    """The median radial edge profile of photos in the training framing (each photo's frame is the square)."""
    rows = []
    for img in images:
        measured = _measure(img)
        if measured is not None:
            _, profile, short, _ = measured
            rows.append(_normalised(profile, float(short)))
    if not rows:
        raise ValueError("no photo to fit the framing on has an edge")
    stacked = np.array(rows)
    # Radii no photo reaches (the corners beyond every frame) stay 0 rather than an all-NaN median.
    seen = ~np.all(np.isnan(stacked), axis=0)
    template = np.zeros(len(RHO))
    template[seen] = np.nanmedian(stacked[:, seen], axis=0)
    return Framing(template=tuple(float(v) for v in template))
