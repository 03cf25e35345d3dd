"""Locating the part and cutting it in the training framing: known answers on real photos and drawn ones."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.predict import framing
from services.predict.framing import Framing, Placement, cut, locate
from services.predict.preprocess import decode, preprocess
from services.predict.train.variants import VARIANTS, Variant, reframe

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def fitted(sample_images: dict[str, list[Path]]) -> Framing:
    """A template from the committed sample photos (the trainer fits it on training photos the same way)."""
    photos = [*sample_images["ok"], *sample_images["defect"]]
    return framing.fit(decode(p.read_bytes(), 300).image for p in photos)


def _image(data: bytes) -> Image.Image:
    return decode(data, 300).image


def _expected(original: Placement, variant: Variant, out_side: int) -> Placement:
    """Where `reframe` puts the original's part: the same geometry `variants.reframe` applies."""
    if variant.fill <= 1.0:
        canvas = round(300 / variant.fill)
        top = min(max((canvas - 300) // 2 + round(variant.shift[1] * canvas), 0), canvas - 300)
        left = min(max((canvas - 300) // 2 + round(variant.shift[0] * canvas), 0), canvas - 300)
        k = out_side / canvas
        oy, ox = top, left
    else:
        crop = round(300 / variant.fill)
        left = min(max((300 - crop) // 2 + round(variant.shift[0] * 300), 0), 300 - crop)
        top = min(max((300 - crop) // 2 + round(variant.shift[1] * 300), 0), 300 - crop)
        k = out_side / crop
        oy, ox = -top, -left
    return Placement(
        cy=(original.cy + oy + 0.5) * k - 0.5,
        cx=(original.cx + ox + 0.5) * k - 0.5,
        side=original.side * k,
    )


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_a_reframed_part_is_found_where_the_reframing_put_it(
    fitted: Framing, sample_images: dict[str, list[Path]], variant: Variant
) -> None:
    for i, path in enumerate([*sample_images["ok"][:4], *sample_images["defect"][:4]]):
        data = path.read_bytes()
        original = locate(_image(data), fitted)
        copy = _image(reframe(data, variant, seed=i))
        found = locate(copy, fitted)
        want = _expected(original, variant, copy.size[0])
        # Session 14 on 200 validation photos: centre within 1.2 %, side within 4.2 % of the truth.
        assert abs(found.cy - want.cy) < 0.02 * want.side, (path.name, found, want)
        assert abs(found.cx - want.cx) < 0.02 * want.side, (path.name, found, want)
        assert abs(found.side / want.side - 1) < 0.05, (path.name, found, want)


def test_a_photo_in_the_training_framing_is_cut_nearly_as_it_is(
    fitted: Framing, sample_images: dict[str, list[Path]]
) -> None:
    for path in sample_images["ok"][:6]:
        data = path.read_bytes()
        where = locate(_image(data), fitted)
        assert abs(where.side / 300 - 1) < 0.15
        assert abs(where.cy - 149.5) < 20
        assert abs(where.cx - 149.5) < 20


def test_a_shrunk_shifted_part_comes_out_like_the_original(
    fitted: Framing, sample_images: dict[str, list[Path]]
) -> None:
    data = sample_images["defect"][1].read_bytes()
    variant = Variant("fill70_640_shift", 0.70, 640, (-0.08, 0.05))
    copy = reframe(data, variant, seed=3)
    original = preprocess(data, 300, fitted)
    framed = preprocess(copy, 300, fitted)
    centred = preprocess(copy, 300)
    # The centre square of the copy shows a part at 70 % and off centre; the cut shows the original's.
    assert float(np.abs(framed - original).mean()) < 0.5 * float(np.abs(centred - original).mean())
    assert float(np.abs(framed - original).mean()) < 0.05


def test_a_frame_without_edges_falls_back_to_the_centre_square(fitted: Framing) -> None:
    blank = Image.new("L", (400, 300), 128)
    assert locate(blank, fitted) == Placement(cy=149.5, cx=199.5, side=300.0)


def test_straight_edges_alone_give_no_circle_and_fall_back(fitted: Framing) -> None:
    stripes = np.zeros((300, 300), dtype=np.uint8)
    stripes[:, ::20] = 255  # vertical lines: every gradient is horizontal, the lines never meet
    assert locate(Image.fromarray(stripes), fitted) == Placement(cy=149.5, cx=149.5, side=300.0)


def test_a_square_near_the_input_side_is_cut_without_resampling() -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (320, 340), dtype=np.uint8)
    # The square's top-left pixel centre is (10.2, 19.8): rounded to whole pixels (10, 20).
    out = cut(Image.fromarray(arr), Placement(cy=159.7, cx=169.3, side=306.0), 300)
    # Pixels copied exactly: a half-pixel bilinear shift would average away a 2-3 px pinhole.
    np.testing.assert_array_equal(np.round(out * 255).astype(np.uint8), arr[10:310, 20:320])


def test_outside_the_frame_is_the_border_median() -> None:
    arr = np.full((300, 300), 90, dtype=np.uint8)
    arr[100:200, 100:200] = 250
    out = cut(Image.fromarray(arr), Placement(cy=49.5, cx=149.5, side=300.0), 300)
    assert np.allclose(out[:100], 90 / 255)  # the 100 rows above the frame
    np.testing.assert_array_equal(np.round(out[100:] * 255).astype(np.uint8), arr[:200])


def test_a_larger_square_is_resized_with_antialiasing() -> None:
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (640, 640), dtype=np.uint8)
    img = Image.fromarray(arr)
    out = cut(img, Placement(cy=319.5, cx=319.5, side=600.0), 300)
    want = img.resize((300, 300), Image.Resampling.BILINEAR, box=(20.0, 20.0, 620.0, 620.0))
    np.testing.assert_allclose(out, np.asarray(want, dtype=np.float32) / 255, atol=1e-6)
    # Averaging 2x2 blocks of noise narrows its spread; point sampling would keep it.
    assert float(out.std()) < 0.7 * float((arr / 255).std())


def test_framing_round_trips_through_the_card(fitted: Framing) -> None:
    assert Framing.from_dict(fitted.to_dict()) == fitted


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"method": "hough-v0", "template": [0.0] * len(framing.RHO)}, "unknown framing method"),
        ({"method": framing.METHOD, "template": [0.0] * 3}, "finite numbers"),
        ({"method": framing.METHOD, "template": [float("nan")] * len(framing.RHO)}, "finite numbers"),
    ],
)
def test_a_card_framing_this_code_cannot_apply_is_refused(section: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Framing.from_dict(section)


def test_preprocess_without_framing_is_the_centre_square(sample_images: dict[str, list[Path]]) -> None:
    data = sample_images["ok"][0].read_bytes()
    arr = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float32) / 255
    np.testing.assert_allclose(preprocess(data, 300), arr, atol=1e-6)


def test_a_frame_too_thin_to_match_the_profile_on_falls_back_to_the_centre_square(fitted: Framing) -> None:
    # 32x460 px: a view of 5x66 px, where no frame side tried compares 8 radii reaching the rim.
    noise = np.random.default_rng(0).integers(0, 256, (32, 460), dtype=np.uint8)
    a, _ = framing._view(Image.fromarray(noise))
    gy, gx = framing._sobel(a)
    assert framing._centre(gy, gx, np.sqrt(gy * gy + gx * gx)) is not None  # a centre, but no side
    # Not a 16 px square blown up to the model's input: no match is no match.
    assert locate(Image.fromarray(noise), fitted) == Placement(cy=15.5, cx=229.5, side=32.0)


def _cut_padding_the_whole_frame(img: Image.Image, where: Placement, size: int) -> np.ndarray:
    """The resized cut as it reads: the frame padded with its border median wherever the square leaves it."""
    w, h = img.size
    half = where.side / 2
    box = (where.cx + 0.5 - half, where.cy + 0.5 - half, where.cx + 0.5 + half, where.cy + 0.5 + half)
    pad = int(np.ceil(max(0.0, -box[0], -box[1], box[2] - w, box[3] - h)))
    padded = Image.new("L", (w + 2 * pad, h + 2 * pad), framing._border_fill(np.asarray(img)))
    padded.paste(img, (pad, pad))
    shifted = (box[0] + pad, box[1] + pad, box[2] + pad, box[3] + pad)
    resized = padded.resize((size, size), Image.Resampling.BILINEAR, box=shifted)
    return np.asarray(resized, dtype=np.float32) / 255


@pytest.mark.parametrize(
    "where",
    [
        Placement(cy=-250.0, cx=-250.0, side=900.0),  # centre far outside, square mostly outside
        Placement(cy=590.3, cx=20.7, side=700.0),
        Placement(cy=299.5, cx=299.5, side=640.0),  # just over every side
        Placement(cy=-100.0, cx=300.0, side=150.0),  # upscaled, half outside
    ],
)
def test_a_square_leaving_the_frame_pads_only_what_it_covers(
    where: Placement, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(2)
    img = Image.fromarray(rng.integers(0, 256, (600, 600), dtype=np.uint8))
    want = _cut_padding_the_whole_frame(img, where, 300)
    created: list[int] = []
    new = Image.new

    def spy(mode: str, size: tuple[int, int], *args: object, **kwargs: object) -> Image.Image:
        created.append(size[0] * size[1])
        return new(mode, size, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image, "new", spy)
    got = cut(img, where, 300)
    # A square half out of a large frame must not pad the whole frame (up to ~13x its pixels): a 9000 px
    # PNG would need a gigabyte in a 1 GB Lambda.
    assert max(created, default=0) <= (where.side + 16) ** 2
    np.testing.assert_allclose(got, want, atol=1.01 / 255)


@pytest.mark.parametrize("side", [450, 470])
def test_a_frame_the_view_does_not_divide_evenly_maps_back_without_a_shift(
    fitted: Framing, sample_images: dict[str, list[Path]], side: int
) -> None:
    # 450 px is viewed at 1/7 (65 px, the last one partial): its pixels are still 7 apart, not 450/65.
    errors = []
    for path in sample_images["ok"][:8]:
        img = _image(path.read_bytes())
        original = locate(img, fitted)
        canvas = Image.new("L", (side, side), framing._border_fill(np.asarray(img)))
        offset = side - 305  # near the far corner, where a wrong scale shifts the most
        canvas.paste(img, (offset, offset))
        found = locate(canvas, fitted)
        errors.append(max(abs(found.cy - original.cy - offset), abs(found.cx - original.cx - offset)))
    # Two views of different steps agree to about a pixel; a scale off by 1 % moves the centre ~4 px.
    assert float(np.mean(errors)) < 2.0, errors
