"""Batch augmentations on (B, 1, S, S) tensors in 0-1, chosen for top-view round parts and other cameras.

Geometry: any rotation angle plus flips (a casting has no preferred orientation), the part filling 70-112 %
of the frame (background filled in), a shift of up to 6 % (another camera frames differently).
Photometry: brightness, contrast,
gamma, Gaussian blur, sensor noise and a resolution loss (a larger or worse camera downsized).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from services.predict.train.config import PIT_DEPTH
from services.predict.train.variants import PIT_RADIUS, flange_spot, paint_pit, paint_stamp


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of every augmentation; `none()` turns all but rotation and flips off."""

    scale: tuple[float, float] = (0.65, 1.12)
    shift: float = 0.06
    # Background shown by a zoom-out: plain (the border level) or, with this probability, textured with
    # pixel noise of up to this standard deviation, as a wider camera's view of a rough table would be.
    bg_noise_p: float = 0.5
    bg_noise_sigma: float = 0.06
    brightness: float = 0.1
    contrast: tuple[float, float] = (0.75, 1.3)
    gamma: tuple[float, float] = (0.75, 1.35)
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.0)
    noise_p: float = 0.2
    noise_sigma: float = 0.02
    lowres_p: float = 0.1

    @classmethod
    def none(cls) -> AugmentConfig:
        """No zoom, shift or photometric change: `photometric` then returns its input (up to rounding)."""
        return cls(
            scale=(1.0, 1.0),
            shift=0.0,
            bg_noise_p=0.0,
            brightness=0.0,
            contrast=(1.0, 1.0),
            gamma=(1.0, 1.0),
            blur_p=0.0,
            noise_p=0.0,
            lowres_p=0.0,
        )


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) * (high - low) + low


def geometric(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Random rotation, flip, scale (a zoom-out shows the background level around the part) and shift."""
    return geometric_with_masks(x, None, cfg, gen)[0]


def geometric_with_masks(
    x: torch.Tensor,
    masks: torch.Tensor | None,
    cfg: AugmentConfig,
    gen: torch.Generator,
    min_scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`geometric`, and the same warp applied to `masks` (B, 1, S, S; zero outside the frame).

    The masks say where a synthetic pit was painted; warped with the photo, they still say where it is.
    They draw nothing from `gen`, so a run with masks sees the same geometry as one without. `min_scale`
    (one per photo) raises a drawn zoom to at least that, with the same draws.
    """
    n = x.shape[0]
    angle = torch.rand(n, generator=gen) * 2 * math.pi
    scale = _uniform(n, *cfg.scale, gen)
    if min_scale is not None:
        scale = torch.maximum(scale, min_scale)
    # theta maps output to input coordinates: a factor s > 1 there shows the part smaller (zoomed out).
    inv_scale = 1.0 / scale
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) * inv_scale, torch.sin(angle) * inv_scale
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * flip
    theta[:, 0, 1] = -sin
    theta[:, 1, 0] = sin * flip
    theta[:, 1, 1] = cos
    theta[:, :, 2] = (torch.rand(n, 2, generator=gen) * 2 - 1) * cfg.shift * 2
    textured = torch.rand(n, generator=gen) < cfg.bg_noise_p
    sigma = torch.rand(n, generator=gen) * cfg.bg_noise_sigma
    grid = affine_grid(theta, x.shape[-2], x.shape[-1])
    # Zoomed-out frames show background around the part, as a wider camera would, not mirrored parts.
    bg = border_median(x)
    out = F.grid_sample(x - bg, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + bg
    if textured.any():
        # A 300 px network sees single-pixel texture: trained on flat fill only, it took a noisy
        # background for defects (14 false rejects in 579 ok parts shown at 70 % of a textured frame).
        outside = (grid[textured].abs() > 1).any(dim=-1).unsqueeze(1)
        k = int(textured.sum())
        noise = torch.randn((k, *x.shape[1:]), generator=gen) * sigma[textured].view(k, 1, 1, 1)
        out[textured] += noise * outside
    if masks is None:
        return out, None
    return out, F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`F.affine_grid(theta, (B, C, H, W), align_corners=False)` by broadcasting.

    Same numbers, about a tenth of the time at 300 px: torch's version builds a (B, H, W, 3) base grid and
    a batched matmul, which dominated an augmented training step at full resolution.
    """
    xs = (torch.arange(width, dtype=theta.dtype) * 2 + 1) / width - 1
    ys = ((torch.arange(height, dtype=theta.dtype) * 2 + 1) / height - 1).view(1, height, 1)
    xs = xs.view(1, 1, width)
    t = theta.view(-1, 6, 1, 1)
    gx = t[:, 0] * xs + t[:, 1] * ys + t[:, 2]
    gy = t[:, 3] * xs + t[:, 4] * ys + t[:, 5]
    return torch.stack([gx, gy], dim=-1)


def border_median(x: torch.Tensor) -> torch.Tensor:
    """Per-image median of the outermost pixel ring, (B, 1, 1, 1): the background level."""
    ring = torch.cat([x[:, :, 0, :], x[:, :, -1, :], x[:, :, :, 0], x[:, :, :, -1]], dim=-1)
    return ring.flatten(1).median(dim=1).values.view(-1, 1, 1, 1)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image separable Gaussian blur with a 7-tap kernel."""
    taps = torch.arange(-3, 4, dtype=x.dtype)
    k = torch.exp(-(taps[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    k = k / k.sum(dim=1, keepdim=True)
    n = x.shape[0]
    # Grouped convolution: one kernel per image in the batch.
    xs = x.reshape(1, n, *x.shape[2:])
    xs = F.conv2d(F.pad(xs, (3, 3, 0, 0), mode="reflect"), k[:, None, None, :], groups=n)
    xs = F.conv2d(F.pad(xs, (0, 0, 3, 3), mode="reflect"), k[:, None, :, None], groups=n)
    return xs.reshape(x.shape)


def photometric(
    x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator, sharp: torch.Tensor | None = None
) -> torch.Tensor:
    """Brightness, contrast, gamma, blur, noise and resolution loss, clipped to 0-1.

    Photos marked in `sharp` (a bool per photo) skip the blur and the resolution loss; the draws are the
    same either way.
    """
    n = x.shape[0]
    size = x.shape[-1]
    # Every random draw happens for the whole batch, in a fixed order, so a run is reproducible from the seed
    # whichever images a draw selects.
    blur = torch.rand(n, generator=gen) < cfg.blur_p
    sigma_all = _uniform(n, *cfg.blur_sigma, gen)
    low = torch.rand(n, generator=gen) < cfg.lowres_p
    contrast = _uniform(n, *cfg.contrast, gen).view(n, 1, 1, 1)
    bright = _uniform(n, -cfg.brightness, cfg.brightness, gen).view(n, 1, 1, 1)
    gamma = torch.exp(_uniform(n, math.log(cfg.gamma[0]), math.log(cfg.gamma[1]), gen)).view(n, 1, 1, 1)
    noisy = torch.rand(n, generator=gen) < cfg.noise_p
    noise_level = torch.rand(n, generator=gen) * cfg.noise_sigma
    if sharp is not None:
        blur &= ~sharp
        low &= ~sharp
    x = x.clone()
    if blur.any():
        x[blur] = _gaussian_blur(x[blur], sigma_all[blur])
    if low.any():
        small = int(size * 0.5)
        down = F.interpolate(x[low], size=(small, small), mode="area")
        x[low] = F.interpolate(down, size=(size, size), mode="bilinear", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    # In place on the batch's own copy: at 300 px each full-batch temporary costs tens of milliseconds.
    x.sub_(mean).mul_(contrast).add_(mean + bright).clamp_(1e-6, 1.0)
    x.log_().mul_(gamma).exp_()
    if noisy.any():
        k = int(noisy.sum())
        x[noisy] += torch.randn((k, *x.shape[1:]), generator=gen) * noise_level[noisy].view(k, 1, 1, 1)
    return x.clamp_(0.0, 1.0)


def augment(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Geometry, then photometry; both are random per image and reproducible through `gen`."""
    return photometric(geometric(x, cfg, gen), cfg, gen)


def augment_with_masks(
    x: torch.Tensor,
    masks: torch.Tensor,
    cfg: AugmentConfig,
    gen: torch.Generator,
    sharp: torch.Tensor | None = None,
    min_scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`augment`, with `masks` moved by the same geometry (photometry leaves them as they are)."""
    out, moved = geometric_with_masks(x, masks, cfg, gen, min_scale)
    assert moved is not None
    return photometric(out, cfg, gen, sharp), moved


@dataclass(frozen=True)
class PinholeConfig:
    """Synthetic pits: size, depth and place of the dark spot, and the highlight a pit's far wall shows."""

    p: float = 0.0
    sigma: tuple[float, float] = (0.6, 1.3)
    depth: tuple[float, float] = PIT_DEPTH
    highlight: tuple[float, float] = (0.0, 0.6)
    radius: tuple[float, float] = PIT_RADIUS
    candidates: int = 4
    # Real pinholes (`variants.extract_stamp`, (K, 2r+1, 2r+1)) to copy instead of painting a Gaussian,
    # each `gain` times as deep as it was; None paints.
    stamps: np.ndarray | None = field(default=None, compare=False, repr=False)
    gain: tuple[float, float] = (0.8, 1.25)


@dataclass(frozen=True)
class _PitDraws:
    """Candidate places, size, depth and highlight of up to two pits for each of a number of photos."""

    two: list[bool]
    radius: np.ndarray
    angle: np.ndarray
    sigma: list[list[float]]
    depth: list[list[float]]
    glint: list[list[float]]
    glint_dir: list[list[float]]
    stamp: list[list[int]]
    gain: list[list[float]]


def _draw_pits(n: int, cfg: PinholeConfig, gen: torch.Generator) -> _PitDraws:
    # In this order for every caller: the runs with pits stay reproducible from their seed.
    c = cfg.candidates
    return _PitDraws(
        two=(torch.rand(n, generator=gen) < 0.3).tolist(),
        radius=_uniform(n * 2 * c, *cfg.radius, gen).view(n, 2, c).numpy(),
        angle=(torch.rand(n * 2 * c, generator=gen) * 2 * math.pi).view(n, 2, c).numpy(),
        sigma=_uniform(n * 2, *cfg.sigma, gen).view(n, 2).tolist(),
        depth=_uniform(n * 2, *cfg.depth, gen).view(n, 2).tolist(),
        glint=_uniform(n * 2, *cfg.highlight, gen).view(n, 2).tolist(),
        glint_dir=(torch.rand(n * 2, generator=gen) * 2 * math.pi).view(n, 2).tolist(),
        # Drawn last and only with stamps: the painted runs keep their random numbers.
        stamp=[] if cfg.stamps is None else torch.randint(len(cfg.stamps), (n, 2), generator=gen).tolist(),
        gain=[] if cfg.stamps is None else _uniform(n * 2, *cfg.gain, gen).view(n, 2).tolist(),
    )


def _paint_pits(
    img: np.ndarray, pits: _PitDraws, i: int, stamps: np.ndarray | None = None
) -> list[tuple[float, float]]:
    """Paint photo `i`'s one or two pits onto `img` (2-D, in place), or copy `stamps`; their centres."""
    centres = []
    for j in range(2 if pits.two[i] else 1):
        cy, cx = flange_spot(img, pits.radius[i, j], pits.angle[i, j])
        if stamps is None:
            paint_pit(img, cy, cx, pits.sigma[i][j], pits.depth[i][j], pits.glint[i][j], pits.glint_dir[i][j])
        else:
            paint_stamp(img, cy, cx, stamps[pits.stamp[i][j]], pits.gain[i][j])
        centres.append((cy, cx))
    return centres


def add_pinholes(
    x: torch.Tensor, y: torch.Tensor, cfg: PinholeConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paint one or two small pits on the flange of a fraction `cfg.p` of the ok photos and label them defect.

    The shipped network misses real 2-3 px rim pinholes even on its own training photos (19 of 5,314
    wrong, 12 of them defects). The pits (`variants.paint_pit`) copy a real one. Runs before the geometric
    augmentation, so they are rotated, scaled and blurred like real ones. `p` 0 draws nothing.
    """
    if cfg.p <= 0:
        return x, y
    n = x.shape[0]
    # Every draw for the whole batch, in a fixed order: reproducible from the seed.
    chosen = (torch.rand(n, generator=gen) < cfg.p) & (y == 0)
    pits = _draw_pits(n, cfg, gen)
    if not chosen.any():
        return x, y
    x, y = x.clone(), y.clone()
    for i in torch.nonzero(chosen).flatten().tolist():
        _paint_pits(x[i, 0].numpy(), pits, i, cfg.stamps)  # a view: painting it paints the batch's copy
        y[i] = 1
    return x, y


# Where the curriculum starts (`pit_schedule`): a deep blob a few pixels wide, which a network learned to
# see in 520 steps where it did not learn a 30 %-deep, 1 px one (docs/model.md, session 9).
# A copied pinhole starts three times as deep.
PIT_START = PinholeConfig(sigma=(2.0, 3.0), depth=(0.5, 0.9), gain=(2.5, 3.5))


def pit_schedule(final: PinholeConfig, t: float, start: PinholeConfig = PIT_START) -> PinholeConfig:
    """Pit size and depth a fraction `t` (0-1) of the way from `start` to `final`; the rest from `final`."""
    t = min(max(t, 0.0), 1.0)

    def lerp(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
        return (a[0] * (1 - t) + b[0] * t, a[1] * (1 - t) + b[1] * t)

    return PinholeConfig(
        p=final.p,
        sigma=lerp(start.sigma, final.sigma),
        depth=lerp(start.depth, final.depth),
        highlight=final.highlight,
        radius=final.radius,
        candidates=final.candidates,
        stamps=final.stamps,
        gain=lerp(start.gain, final.gain),
    )


def add_pit_pairs(
    x: torch.Tensor, y: torch.Tensor, k: int, cfg: PinholeConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Append pitted copies of up to `k` of the batch's ok photos, labelled defect; also where each pit is.

    Returns (photos, labels, masks, supervised, sources) for the batch plus its copies. A copy differs from
    its clean original only by the pit, so the pit is the one thing the label can be learned from; unpaired
    pits at the same rate left the network hedging (44 % unclear). `masks` (B+k, 1, S, S) is 1 on a 3x3
    square at each pit's centre and 0 elsewhere; `supervised` marks the photos whose mask is known (the ok
    photos and the copies, not the real defects, whose flaw is somewhere unmarked); `sources` holds each
    copy's index in the batch.
    """
    n, size = x.shape[0], x.shape[-1]
    ok = torch.nonzero(y == 0).flatten()
    # Every draw for k copies whatever the batch holds, in a fixed order: reproducible from the seed.
    order = torch.randperm(len(ok), generator=gen)
    pits = _draw_pits(k, cfg, gen)
    chosen = ok[order[:k]]
    copies = x[chosen].clone()
    masks = torch.zeros(n + len(chosen), 1, size, size)
    for j in range(len(chosen)):
        # A view: painting it paints the copy.
        for cy, cx in _paint_pits(copies[j, 0].numpy(), pits, j, cfg.stamps):
            py, px = int(np.clip(round(cy), 1, size - 2)), int(np.clip(round(cx), 1, size - 2))
            masks[n + j, 0, py - 1 : py + 2, px - 1 : px + 2] = 1.0
    photos = torch.cat([x, copies])
    labels = torch.cat([y, torch.ones(len(chosen), dtype=y.dtype)])
    supervised = torch.cat([y == 0, torch.ones(len(chosen), dtype=torch.bool)])
    return photos, labels, masks, supervised, chosen


def relabel_hidden_pits(y: torch.Tensor, masks: torch.Tensor, first_copy: int) -> torch.Tensor:
    """Copies whose every pit the geometry moved out of the frame are ok photos again."""
    visible = masks[first_copy:].amax(dim=(1, 2, 3)) > 0.5
    y = y.clone()
    y[first_copy:] = visible.to(y.dtype)
    return y
