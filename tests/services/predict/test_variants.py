"""Re-framed copies of a photo (zoomed out into a new frame or in by a centre crop), and synthetic pits."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from services.predict.train.variants import (
    STAMP_RADIUS,
    VARIANTS,
    Variant,
    extract_stamp,
    flange_spot,
    paint_pit,
    paint_stamp,
    reframe,
)

pytestmark = pytest.mark.unit


def _disc(side: int = 300, radius: int = 120) -> bytes:
    """A bright disc on a dark background: its apparent size tells the zoom."""
    yy, xx = np.mgrid[0:side, 0:side]
    arr = np.where(np.hypot(yy - side / 2, xx - side / 2) < radius, 220, 40).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _disc_fraction(data: bytes) -> tuple[int, float]:
    img = Image.open(io.BytesIO(data)).convert("L")
    arr = np.asarray(img, dtype=np.float32)
    return img.size[0], float((arr > 130).mean())


def test_zoom_in_crops_the_centre_and_enlarges_the_part() -> None:
    side, before = _disc_fraction(_disc())
    out_side, after = _disc_fraction(reframe(_disc(), Variant("zoom", 1.12, 400)))
    assert (side, out_side) == (300, 400)
    # The disc covers a share of the frame larger by the zoom squared.
    assert after / before == pytest.approx(1.12**2, rel=0.03)


def test_zoom_out_shrinks_the_part_into_a_larger_frame() -> None:
    _, before = _disc_fraction(_disc())
    out_side, after = _disc_fraction(reframe(_disc(), Variant("out", 0.7, 512)))
    assert out_side == 512
    assert after / before == pytest.approx(0.7**2, rel=0.03)


def test_every_variant_decodes_at_its_size() -> None:
    assert any(v.fill > 1 for v in VARIANTS)
    for i, v in enumerate(VARIANTS):
        img = Image.open(io.BytesIO(reframe(_disc(), v, seed=i)))
        assert img.format == "JPEG"
        assert img.size == (v.out_size, v.out_size)


def test_paint_pit_darkens_a_small_spot_in_place_by_its_depth() -> None:
    img = np.full((40, 40), 0.8, dtype=np.float32)
    paint_pit(img, 20.0, 20.0, sigma=1.0, depth=0.3)
    assert img[20, 20] == pytest.approx(0.8 * 0.7)
    changed = np.argwhere(np.abs(img - 0.8) > 1e-6)
    assert changed.min(axis=0).tolist() == [16, 16]
    assert changed.max(axis=0).tolist() == [24, 24]
    # Half depth one sigma away; nearly nothing three sigmas away.
    assert img[20, 21] == pytest.approx(0.8 * (1 - 0.3 * np.exp(-0.5)), rel=1e-5)
    assert img[20, 23] > 0.8 * 0.996


def test_paint_pit_glint_brightens_beside_the_pit_and_stays_in_range() -> None:
    img = np.full((40, 40), 0.95, dtype=np.float32)
    paint_pit(img, 20.0, 20.0, sigma=1.0, depth=0.5, glint=1.0, glint_dir=0.0)
    # The highlight sits 2 sigmas along +x: brighter than the background there, clipped at 1.
    assert img[20, 22] > 0.95
    assert img.max() <= 1.0
    assert img[20, 20] < 0.95 * 0.6


def test_flange_spot_takes_the_brightest_candidate() -> None:
    img = np.zeros((100, 100), dtype=np.float32)
    img[50, 85] = 1.0  # radius 0.7 of the half side, angle 0
    cy, cx = flange_spot(img, np.array([0.7, 0.7, 0.6]), np.array([np.pi / 2, 0.0, np.pi]))
    assert (round(cy), round(cx)) == (50, 85)


def _flange_with_rim(pit: bool) -> np.ndarray:
    """A brightness ramp crossed by a dark rim line (an edge to keep), with or without a pit beside it."""
    img = np.tile(np.linspace(0.6, 0.9, 60, dtype=np.float32), (60, 1))
    img[:, 40:42] *= 0.5
    if pit:
        paint_pit(img, 30.0, 31.0, sigma=1.0, depth=0.3)
    return img


def test_extract_stamp_copies_the_pit_relative_to_its_background_and_fades_at_its_edge() -> None:
    r = STAMP_RADIUS
    stamp = extract_stamp(_flange_with_rim(pit=True), 28, 29)  # marked 2 px off: recentred on the pit
    assert stamp.shape == (2 * r + 1, 2 * r + 1)
    assert np.unravel_index(int(np.argmin(stamp)), stamp.shape) == (r, r)
    assert stamp[r, r] == pytest.approx(-0.3, abs=0.02)
    taps = np.arange(-r, r + 1)
    outside = np.hypot(taps[:, None], taps[None, :]) >= r + 0.5
    assert not stamp[outside].any()
    # The rim line and the ramp are background: without the pit there is almost nothing to copy.
    assert np.abs(extract_stamp(_flange_with_rim(pit=False), 30, 31)).max() < 0.02


def test_extract_stamp_refuses_a_mark_too_close_to_the_edge() -> None:
    with pytest.raises(ValueError, match="too close to the edge"):
        extract_stamp(_flange_with_rim(pit=True), 5, 30)


def test_paint_stamp_multiplies_the_stamp_in_at_its_gain_and_stays_in_range() -> None:
    stamp = extract_stamp(_flange_with_rim(pit=True), 30, 31)
    img = np.full((40, 40), 0.8, dtype=np.float32)
    paint_stamp(img, 20.0, 20.0, stamp, gain=2.0)
    r = STAMP_RADIUS
    assert np.allclose(img[20 - r : 21 + r, 20 - r : 21 + r], np.clip(0.8 * (1 + 2.0 * stamp), 0, 1))
    untouched = np.ones_like(img, dtype=bool)
    untouched[20 - r : 21 + r, 20 - r : 21 + r] = False
    assert np.all(img[untouched] == np.float32(0.8))
    paint_stamp(img, 0.0, 0.0, -np.ones_like(stamp), gain=5.0)  # clipped, and kept inside the frame
    assert img.min() == 0.0
