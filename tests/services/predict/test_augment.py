"""Training augmentations: the fast affine grid equals torch's, draws are reproducible, ranges hold; pits."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from services.predict.train.augment import (  # noqa: E402
    AugmentConfig,
    PinholeConfig,
    add_pinholes,
    affine_grid,
    augment,
    geometric,
    photometric,
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
