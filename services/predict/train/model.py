"""A small CNN for 1-channel part photos, trained from scratch; exported to ONNX with its OOD head."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _block(c_in: int, c_out: int, stride: int, pool: bool = False, pool_first: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, 3, stride=1 if pool else stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]
    if pool and pool_first and stride == 2:
        # The widening conv then runs on a quarter of the positions (from stage 1 on: about half the
        # network's multiply-adds). Not the default: in both runs so far the band grew or the re-framed
        # escapes did (docs/model.md, session 8).
        return nn.Sequential(nn.MaxPool2d(2), *layers)
    return _pooled(layers, stride, pool)


def _stem(c_out: int, kernel: int, stride: int, pool: bool, c_in: int = 1) -> nn.Sequential:
    """Overlapping patches of the full-resolution photo (e.g. 5x5 every 3 px) to `c_out` channels.

    Every pixel of a 300 px photo reaches this first layer, so a 2-3 px pinhole on the rim is seen whole by
    at least one patch, while the maps after it are as small as a 100 px network's.
    """
    padding = (kernel - 1) // 2 - (stride - 1) // 2
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]
    return _pooled(layers, 2, pool)


def _pooled(layers: list[nn.Module], stride: int, pool: bool) -> nn.Sequential:
    if pool and stride == 2:
        # Max pooling keeps the response of a pinhole a few pixels wide; a strided conv can blur it away.
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Standardize(nn.Module):
    """Per-image zero mean, unit variance: exposure and contrast of the camera stop mattering."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        return (x - mean) / (std + 0.02)


def max_filter(x: torch.Tensor, k: int) -> torch.Tensor:
    """`F.max_pool2d(x, k, 1, k // 2)` (odd k) as the maximum of shifted slices, rows then columns.

    The same numbers; on a training batch (64 photos of 300 px, one thread) 73 ms against 490 ms for
    torch's stride-1 max-pool. The ONNX export keeps the max-pool, which onnxruntime runs faster than the
    slices (one photo: +0.26 ms for the closing against +0.65 ms, measured beside a training run).
    """
    p = k // 2
    if torch.onnx.is_in_onnx_export():
        return F.max_pool2d(x, k, 1, p)
    height, width = x.shape[-2], x.shape[-1]
    rows = F.pad(x, (p, p, 0, 0), value=float("-inf"))
    out = rows[..., :, 0:width]
    for i in range(1, k):
        out = torch.maximum(out, rows[..., :, i : i + width])
    cols = F.pad(out, (0, 0, p, p), value=float("-inf"))
    out = cols[..., 0:height, :]
    for i in range(1, k):
        out = torch.maximum(out, cols[..., i : i + height, :])
    return out


class WithLocalContrast(nn.Module):
    """The standardised photo plus a second channel: its brightness relative to a morphological closing.

    A closing (max-pool, then min-pool, `window` px) fills dark spots narrower than the window and keeps
    larger shapes, so `(x - closing) / closing` is 0 on flat metal and on shapes wider than the window and
    negative on a pinhole (a real one is 12-22 % darker than the metal round it: docs/model.md, session 11).
    Scaled by `gain` to about unit size. Max filters only (`max_filter`), so the ONNX graph needs no
    custom op.
    """

    def __init__(self, window: int = 5, gain: float = 5.0) -> None:
        super().__init__()
        self.window = window
        self.gain = gain
        self.standardize = Standardize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        closed = -max_filter(-max_filter(x, self.window), self.window)
        # The 0.02 keeps black frames finite; the difference keeps flat areas exactly 0 at any brightness.
        relative = (x - closed) / (closed + 0.02) * self.gain
        return torch.cat([self.standardize(x), relative], dim=1)


class AvgMaxPool(nn.Module):
    """Global average and global max pooling side by side.

    A pinhole or a burr is a few positions of the last feature map: the average dilutes it by the map's
    area, the maximum keeps it.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)], dim=1)


class PartNet(nn.Module):
    """Stride-2 conv stages, global pooling (average, or average and max), a feature vector, a 2-way head."""

    def __init__(
        self,
        widths: tuple[int, ...] = (8, 16, 32, 64, 128),
        double_from: int = 1,
        pool: bool = False,
        head_pool: str = "avg",
        stem_stride: int = 1,
        stem_kernel: int = 3,
        pool_first_from: int | None = None,
        aux_stage: int | None = None,
        local_contrast: bool = False,
    ) -> None:
        super().__init__()
        # With `local_contrast`, a second input channel shows small dark spots (`WithLocalContrast`).
        layers: list[nn.Module] = [WithLocalContrast() if local_contrast else Standardize()]
        c_in = 2 if local_contrast else 1
        self.aux_at: int | None = None
        self.aux: nn.Module | None = None
        for i, w in enumerate(widths):
            if i == 0 and stem_stride > 1:
                layers.append(_stem(w, stem_kernel, stem_stride, pool, c_in))
            else:
                first = pool_first_from is not None and i >= pool_first_from
                layers.append(_block(c_in, w, 2, pool, first))
            if i == aux_stage:
                # Training only (the exported graph never calls it): a 1x1 conv saying which cell of this
                # stage's map holds a synthetic pit. Probes put it after stage 1's downsampling block (a
                # 25 px map at 300 px input): there a 30 %-deep pit was learned, on the stem or stage 2 not.
                self.aux_at = len(layers)
                self.aux = nn.Conv2d(w, 1, 1)
            # A second conv only on the small late maps: depth where it is cheap.
            if i >= double_from:
                layers.append(_block(w, w, 1))
            c_in = w
        self.body = nn.Sequential(*layers)
        if head_pool not in ("avg", "avgmax"):
            raise ValueError(f"head_pool must be 'avg' or 'avgmax', not {head_pool!r}")
        self.pool: nn.Module = nn.AdaptiveAvgPool2d(1) if head_pool == "avg" else AvgMaxPool()
        self.feature_dim = c_in * (1 if head_pool == "avg" else 2)
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(self.feature_dim, 2)
        if aux_stage is not None and self.aux is None:
            raise ValueError(f"aux_stage {aux_stage} is not a stage of widths {widths}")

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [ok, defect] and the auxiliary pit map [B, 1, h, w] (logits) of stage `aux_stage`."""
        if self.aux is None or self.aux_at is None:
            raise ValueError("this network has no auxiliary head (aux_stage=None)")
        h = self.body[: self.aux_at](x)
        aux: torch.Tensor = self.aux(h)
        f = torch.flatten(self.pool(self.body[self.aux_at :](h)), 1)
        logits: torch.Tensor = self.head(self.dropout(f))
        return logits, aux

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (after pooling), used by the OOD score."""
        return torch.flatten(self.pool(self.body(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [ok, defect]."""
        logits: torch.Tensor = self.head(self.dropout(self.features(x)))
        return logits


class Exported(nn.Module):
    """What goes into the ONNX file: logits plus a Mahalanobis OOD score on the penultimate features.

    The OOD score is the squared distance to the nearest class mean under the shared covariance of the
    training features, divided by the feature dimension (so ~1 means typical).
    """

    means: torch.Tensor
    precision: torch.Tensor

    def __init__(self, net: PartNet, means: torch.Tensor, precision: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("means", means.clone())
        self.register_buffer("precision", precision.clone())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [B, 2], ood [B])."""
        f = self.net.features(x)
        logits = self.net.head(f)
        diff = f[:, None, :] - self.means[None, :, :]
        d2 = (diff @ self.precision * diff).sum(dim=-1) / f.shape[1]
        return logits, d2.min(dim=1).values


def fold_for_export(net: PartNet, fp16_weights: bool = False) -> PartNet:
    """An eval-mode copy with every BatchNorm folded into its conv; with `fp16_weights`, conv weights rounded
    to float16 values.

    Calibration, thresholds and the OOD fit then run on exactly the weights the ONNX file holds: rounding
    only inside the file moved the logits by 8e-4 and the OOD score by 2.5e-3 of their scale (shipped
    model), past the export check's tolerance.
    """
    folded = copy.deepcopy(net).eval()
    for seq in folded.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(conv, bn)
                seq[i + 1] = nn.Identity()
    if fp16_weights:
        with torch.no_grad():
            for m in folded.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.copy_(m.weight.half().float())
    return folded


def fit_mahalanobis(features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Class means and the shrunk inverse of the shared within-class covariance."""
    means = torch.stack([features[labels == c].mean(dim=0) for c in (0, 1)])
    centred = features - means[labels]
    cov = centred.T @ centred / max(len(features) - 2, 1)
    # Shrinkage keeps the inverse stable where a few feature channels are nearly constant.
    shrink = 0.05 * torch.trace(cov) / cov.shape[0]
    precision = torch.linalg.inv(cov + shrink * torch.eye(cov.shape[0]))
    return means, precision
