"""Re-framed copies of a photo: the part zoomed out into a new frame, or zoomed in by a centre crop."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from services.predict.train.variants import VARIANTS, Variant, reframe

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
