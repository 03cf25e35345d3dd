"""Training augmentations: the fast affine grid equals torch's, draws are reproducible, ranges hold; pits."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from services.predict.train.augment import (  # noqa: E402
    PIT_START,
    AugmentConfig,
    PinholeConfig,
    add_pinholes,
    add_pit_pairs,
    affine_grid,
    augment,
    augment_with_masks,
    geometric,
    geometric_with_masks,
    photometric,
    pit_schedule,
    relabel_hidden_pits,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("height", "width"), [(300, 300), (96, 64), (7, 11)])
def test_affine_grid_matches_torch(height: int, width: int) -> None:
    theta = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(1))
    expected = F.affine_grid(theta, [5, 1, height, width], align_corners=False)
    assert torch.allclose(affine_grid(theta, height, width), expected, atol=1e-5)


def test_augment_is_reproducible_from_the_seed_and_stays_in_range() -> None:
    x = torch.rand(16, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    a = augment(x, AugmentConfig(), torch.Generator().manual_seed(7))
    b = augment(x, AugmentConfig(), torch.Generator().manual_seed(7))
    c = augment(x, AugmentConfig(), torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == x.shape
    assert float(a.min()) >= 0.0
    assert float(a.max()) <= 1.0


def test_photometric_none_leaves_the_batch_unchanged_and_the_input_untouched() -> None:
    x = torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(0)).clamp(0.01, 1.0)
    before = x.clone()
    out = photometric(x, AugmentConfig.none(), torch.Generator())
    assert torch.allclose(out, x, atol=1e-4)
    assert torch.equal(x, before)


def test_photometric_applies_blur_and_noise_only_to_the_drawn_images() -> None:
    x = torch.rand(32, 1, 32, 32, generator=torch.Generator().manual_seed(0)).clamp(0.01, 1.0)
    off = AugmentConfig.none()
    always = AugmentConfig(**{**off.__dict__, "blur_p": 1.0, "blur_sigma": (1.0, 1.0)})
    blurred = photometric(x, always, torch.Generator())

    # A blur lowers the pixel-to-pixel variation of every image.
    def roughness(t: torch.Tensor) -> torch.Tensor:
        return (t[:, :, 1:, :] - t[:, :, :-1, :]).abs().mean(dim=(1, 2, 3))

    assert bool((roughness(blurred) < roughness(x) * 0.8).all())
    half = AugmentConfig(**{**off.__dict__, "noise_p": 0.5, "noise_sigma": 0.2})
    noisy = photometric(x, half, torch.Generator().manual_seed(3))
    changed = (noisy - x).abs().flatten(1).amax(dim=1) > 1e-4
    assert 0 < int(changed.sum()) < len(x)


def test_geometric_rotates_a_bright_spot_around_the_centre() -> None:
    x = torch.zeros(64, 1, 65, 65)
    x[:, :, 32, 50] = 1.0
    cfg = AugmentConfig(**{**AugmentConfig.none().__dict__, "scale": (1.0, 1.0)})
    out = geometric(x, cfg, torch.Generator().manual_seed(0))
    centre = torch.tensor([32.0, 32.0])
    radii = []
    for img in out[:, 0]:
        ys, xs = torch.nonzero(img > 0.05, as_tuple=True)
        w = img[ys, xs]
        pos = torch.stack([(ys * w).sum() / w.sum(), (xs * w).sum() / w.sum()])
        radii.append(float(torch.linalg.norm(pos - centre)))
    # Rotation (and flips) keep the spot's distance from the centre; its angle varies.
    assert max(abs(r - 18.0) for r in radii) < 1.5
    assert not math.isclose(float(out[0].sum()), 0.0)


def _flange_batch(n: int = 8, size: int = 120) -> tuple[torch.Tensor, torch.Tensor]:
    """A bright ring (the flange) on a mid-grey frame with a dark centre; half the batch labelled defect."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = torch.hypot(yy - size / 2 + 0.5, xx - size / 2 + 0.5) / (size / 2)
    img = torch.where((r > 0.45) & (r < 0.9), 0.8, 0.5) * torch.where(r < 0.3, 0.2, 1.0)
    return img.expand(n, 1, size, size).clone(), torch.tensor([0, 1] * (n // 2))


def test_pinholes_at_zero_draw_nothing_and_return_the_batch_as_is() -> None:
    x, y = _flange_batch()
    gen = torch.Generator().manual_seed(0)
    before = gen.get_state()
    out_x, out_y = add_pinholes(x, y, PinholeConfig(p=0.0), gen)
    assert out_x is x
    assert out_y is y
    # The shipped recipe's random stream stays exactly as it was.
    assert torch.equal(gen.get_state(), before)


def test_pinholes_darken_small_spots_on_ok_photos_only_and_relabel_them() -> None:
    x, y = _flange_batch()
    out_x, out_y = add_pinholes(x, y, PinholeConfig(p=1.0), torch.Generator().manual_seed(1))
    assert out_y.tolist() == [1] * len(y)
    assert torch.equal(x, _flange_batch()[0])  # the input is not modified
    size = x.shape[-1]
    for i in range(len(y)):
        changed = (out_x[i, 0] - x[i, 0]).abs() > 1e-3
        if y[i] == 1:
            assert not changed.any()
            continue
        # One or two pits of at most 9x9 px each, darker overall, on the bright ring.
        assert 1 <= int(changed.sum()) <= 2 * 81
        assert (out_x[i] - x[i]).sum() < 0
        ys, xs = torch.nonzero(changed, as_tuple=True)
        r = torch.hypot(ys.float() - size / 2 + 0.5, xs.float() - size / 2 + 0.5) / (size / 2)
        assert r.min() > 0.50 - 4 / (size / 2)
        assert r.max() < 0.82 + 6 / (size / 2)
        assert float(x[i, 0][changed].max()) == pytest.approx(0.8)  # only the bright metal was drawn on
        assert float(out_x[i].min()) >= 0.0


def test_pinholes_are_reproducible_from_the_seed() -> None:
    x, y = _flange_batch()
    a = add_pinholes(x, y, PinholeConfig(p=0.5), torch.Generator().manual_seed(7))
    b = add_pinholes(x, y, PinholeConfig(p=0.5), torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0])
    assert torch.equal(a[1], b[1])


def test_masks_move_with_the_photo_and_draw_nothing_extra() -> None:
    # A photo that is its own mask (black frame, bright squares) must come out equal to its warped mask.
    x = torch.zeros(16, 1, 64, 64)
    x[:, :, 20:23, 40:43] = 1.0
    x[::2, :, 50:53, 10:13] = 1.0
    cfg = AugmentConfig(bg_noise_p=0.0)
    out, moved = geometric_with_masks(x, x.clone(), cfg, torch.Generator().manual_seed(4))
    assert moved is not None
    assert torch.equal(out, moved)
    assert not torch.equal(moved, x)  # the geometry did move them
    # Same draws as the geometry without masks: a run with masks sees the same rotations and zooms.
    assert torch.equal(geometric(x, cfg, torch.Generator().manual_seed(4)), out)
    gen_a, gen_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    plain = augment(x, AugmentConfig(), gen_a)
    with_masks, _ = augment_with_masks(x, x.clone(), AugmentConfig(), gen_b)
    assert torch.equal(plain, with_masks)
    assert torch.equal(gen_a.get_state(), gen_b.get_state())


def test_a_zoomed_out_square_mask_keeps_a_full_value_cell() -> None:
    # At the smallest zoom, samples are 1.5 px apart; one of them still lands inside the 3x3 square.
    masks = torch.zeros(32, 1, 120, 120)
    masks[:, :, 70:73, 88:91] = 1.0
    cfg = AugmentConfig(scale=(0.65, 0.65), shift=0.0, bg_noise_p=0.0)
    _, moved = geometric_with_masks(torch.rand(32, 1, 120, 120), masks, cfg, torch.Generator().manual_seed(0))
    assert moved is not None
    assert bool((moved.amax(dim=(1, 2, 3)) > 0.99).all())


def test_pit_pairs_append_pitted_copies_of_ok_photos_with_masks_at_the_pits() -> None:
    x, y = _flange_batch(8)
    x = x * torch.linspace(0.9, 1.0, len(y)).view(-1, 1, 1, 1)  # tell the photos apart
    k = 3
    photos, labels, masks, supervised, sources = add_pit_pairs(
        x, y, k, PinholeConfig(), torch.Generator().manual_seed(2)
    )
    n = len(y)
    assert photos.shape == (n + k, *x.shape[1:])
    assert torch.equal(photos[:n], x)  # the batch itself is untouched
    assert labels.tolist() == y.tolist() + [1] * k
    assert supervised.tolist() == (y == 0).tolist() + [True] * k
    assert not masks[:n].any()
    originals = []
    for j in range(k):
        copy, mask = photos[n + j, 0], masks[n + j]
        # The copy is one of the ok photos, darkened only near the marked squares' centres.
        i = min(range(n), key=lambda i: float((copy - x[i, 0]).abs().sum()))
        assert int(sources[j]) == i
        originals.append(i)
        assert y[i] == 0
        darker = (x[i, 0] - copy) > 0.02
        near_mask = F.max_pool2d(mask[None], 9, stride=1, padding=4)[0, 0] > 0
        assert darker.any()
        assert not (darker & ~near_mask).any()
        centres = -F.max_pool2d(-mask[None], 3, stride=1, padding=1)[0, 0] > 0  # squares eroded to centres
        assert 1 <= int(centres.sum()) <= 2
        assert bool(darker[centres].all())
    assert len(set(originals)) == k  # three different photos


def test_pit_pairs_are_reproducible_and_take_at_most_the_ok_photos() -> None:
    x, y = _flange_batch(8)
    a = add_pit_pairs(x, y, 2, PinholeConfig(), torch.Generator().manual_seed(9))
    b = add_pit_pairs(x, y, 2, PinholeConfig(), torch.Generator().manual_seed(9))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    photos, labels, _, _, _ = add_pit_pairs(x, y, 20, PinholeConfig(), torch.Generator())
    assert len(photos) == len(y) + int((y == 0).sum())
    assert int(labels.sum()) == int(y.sum()) + int((y == 0).sum())  # every ok photo copied, as a defect
    only_defects = torch.ones_like(y)
    photos, labels, masks, supervised, sources = add_pit_pairs(
        x, only_defects, 3, PinholeConfig(), torch.Generator()
    )
    assert torch.equal(photos, x)
    assert len(sources) == 0
    assert torch.equal(labels, only_defects)
    assert not masks.any()
    assert not supervised.any()


def test_a_copy_whose_pits_left_the_frame_is_ok_again() -> None:
    y = torch.tensor([0, 1, 1, 1])
    masks = torch.zeros(4, 1, 10, 10)
    masks[2, 0, 4, 4] = 1.0
    masks[3, 0, 4, 4] = 0.3  # the bilinear rest of a pit sampled at the edge of the frame
    assert relabel_hidden_pits(y, masks, 2).tolist() == [0, 1, 1, 0]


def test_pit_schedule_runs_from_the_start_to_the_final_pits() -> None:
    final = PinholeConfig(p=0.1)
    assert pit_schedule(final, 0.0) == PinholeConfig(
        p=0.1, sigma=PIT_START.sigma, depth=PIT_START.depth, gain=PIT_START.gain
    )
    assert pit_schedule(final, 1.0) == final
    assert pit_schedule(final, 7.0) == final
    half = pit_schedule(final, 0.5)
    assert half.depth == pytest.approx(((0.5 + 0.10) / 2, (0.9 + 0.35) / 2))
    assert half.sigma == pytest.approx(((2.0 + 0.6) / 2, (3.0 + 1.3) / 2))
    assert half.gain == pytest.approx(((2.5 + 0.8) / 2, (3.5 + 1.25) / 2))
    stamps = np.zeros((2, 11, 11), dtype=np.float32)
    assert pit_schedule(PinholeConfig(stamps=stamps), 0.5).stamps is stamps


def _stamps() -> np.ndarray:
    """Two pinhole stamps: a dark centre, one with a bright far wall."""
    stamps = np.zeros((2, 11, 11), dtype=np.float32)
    stamps[:, 4:7, 4:7] = -0.2
    stamps[:, 5, 5] = -0.4
    stamps[1, 5, 7] = 0.1
    return stamps


def test_pit_pairs_can_copy_real_pinholes_instead_of_painting_them() -> None:
    x, y = _flange_batch(8)
    stamps = _stamps()
    cfg = PinholeConfig(stamps=stamps, gain=(1.0, 1.0))
    photos, labels, masks, _, sources = add_pit_pairs(x, y, 3, cfg, torch.Generator().manual_seed(4))
    n = len(y)
    assert labels.tolist() == y.tolist() + [1] * 3
    for j in range(3):
        copy, original = photos[n + j, 0], x[int(sources[j]), 0]
        centres = torch.nonzero(-F.max_pool2d(-masks[n + j][None], 3, stride=1, padding=1)[0, 0] > 0)
        assert 1 <= len(centres) <= 2
        for cy, cx in centres.tolist():
            # The stamp's darkest tap lands on the marked centre, at the stamp's depth (gain 1).
            assert float(copy[cy, cx]) == pytest.approx(float(original[cy, cx]) * 0.6, rel=1e-5)
        changed = torch.nonzero((copy - original).abs() > 1e-6)
        near = torch.cdist(changed.float(), centres.float()).amin(dim=1)
        assert float(near.max()) <= 2.0  # the stamps' non-zero taps, 2 px from the centre at most
    again = add_pit_pairs(x, y, 3, cfg, torch.Generator().manual_seed(4))
    assert torch.equal(again[0], photos)


def test_painted_pits_draw_the_same_numbers_whether_or_not_stamps_exist_elsewhere() -> None:
    x, y = _flange_batch(8)
    gen_a, gen_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    add_pit_pairs(x, y, 3, PinholeConfig(), gen_a)
    add_pit_pairs(x, y, 3, PinholeConfig(stamps=_stamps()), gen_b)
    # Stamps draw which stamp and its gain after everything the painted pits draw, and only then.
    assert not torch.equal(gen_a.get_state(), gen_b.get_state())
    gen_c = torch.Generator().manual_seed(5)
    add_pit_pairs(x, y, 3, PinholeConfig(), gen_c)
    assert torch.equal(gen_a.get_state(), gen_c.get_state())


def test_sharp_photos_skip_blur_and_resolution_loss_with_the_same_draws() -> None:
    x = torch.rand(16, 1, 32, 32, generator=torch.Generator().manual_seed(0)).clamp(0.01, 1.0)
    off = AugmentConfig.none()
    cfg = AugmentConfig(**{**off.__dict__, "blur_p": 1.0, "lowres_p": 1.0})
    sharp = torch.tensor([True, False] * 8)
    gen_a, gen_b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    out = photometric(x, cfg, gen_a, sharp)
    everything = photometric(x, cfg, gen_b)
    assert torch.allclose(out[sharp], x[sharp], atol=1e-4)  # nothing else was on
    assert torch.equal(out[~sharp], everything[~sharp])
    assert torch.equal(gen_a.get_state(), gen_b.get_state())


def test_min_scale_raises_the_zoom_of_the_chosen_photos_with_the_same_draws() -> None:
    x, _ = _flange_batch(4)
    half = AugmentConfig(scale=(0.5, 0.5), bg_noise_p=0.0)
    whole = AugmentConfig(scale=(1.0, 1.0), bg_noise_p=0.0)
    floor = torch.tensor([1.0, 0.0, 1.0, 0.0])
    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    raised, _ = geometric_with_masks(x, None, half, gen_a, floor)
    unscaled, _ = geometric_with_masks(x, None, whole, gen_b)
    assert torch.equal(gen_a.get_state(), gen_b.get_state())
    assert torch.allclose(raised[floor > 0], unscaled[floor > 0])
    # The others are still shown at half size: more background around them.
    assert not torch.allclose(raised[floor == 0], unscaled[floor == 0])
