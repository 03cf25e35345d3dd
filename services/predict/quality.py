"""Image-quality checks on the preprocessed array: no verdict on a blank, dark, over-exposed or blurred frame.

They run before the model because a CNN's softmax is confidently wrong on such inputs. The exposure limits
are physical (a frame that is mostly black or white shows no part); the blur limit is calibrated on the
training split's sharpness at training time and stored in the model card.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class QualityLimits:
    """Limits on a sizexsize grayscale array in 0-1."""

    min_mean: float = 0.08
    max_mean: float = 0.92
    min_std: float = 0.025
    max_clipped_dark: float = 0.5
    max_clipped_bright: float = 0.3
    # Calibrated per model (laplacian energy / variance); 0 disables the blur check.
    min_sharpness: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> QualityLimits:
        """Limits from a model card's `quality` section; missing keys keep the defaults."""
        known = {k: float(v) for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_dict(self) -> dict[str, float]:
        """For the model card."""
        return asdict(self)


def sharpness(x: np.ndarray) -> float:
    """Contrast-independent sharpness: mean squared 4-neighbour Laplacian over the image variance."""
    lap = 4 * x[1:-1, 1:-1] - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:]
    var = float(x.var())
    return float(np.mean(lap * lap)) / max(var, 1e-8)


def check(x: np.ndarray, limits: QualityLimits) -> str | None:
    """A reason why this frame must not get a verdict, or None when it is usable."""
    mean = float(x.mean())
    std = float(x.std())
    if mean < limits.min_mean:
        return f"under-exposed or black frame (mean brightness {mean:.3f} < {limits.min_mean})"
    if mean > limits.max_mean:
        return f"over-exposed or blank frame (mean brightness {mean:.3f} > {limits.max_mean})"
    if std < limits.min_std:
        return f"blank frame: no contrast (std {std:.3f} < {limits.min_std})"
    dark = float(np.mean(x <= 0.02))
    if dark > limits.max_clipped_dark:
        return f"under-exposed: {dark:.0%} of pixels clipped black"
    bright = float(np.mean(x >= 0.98))
    if bright > limits.max_clipped_bright:
        return f"over-exposed: {bright:.0%} of pixels clipped white"
    if limits.min_sharpness > 0:
        s = sharpness(x)
        if s < limits.min_sharpness:
            return f"blurred: sharpness {s:.4f} < {limits.min_sharpness:.4f}"
    return None
