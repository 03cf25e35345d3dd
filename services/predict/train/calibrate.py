"""Temperature scaling, expected calibration error and the operating point (numpy only)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from partcheck.errors import ModelError


def softmax_defect(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """P(defect) from [ok, defect] logits divided by the temperature."""
    z = (logits[:, 1] - logits[:, 0]) / temperature
    p: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))
    return p


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the true labels at a temperature."""
    # In log space: a float32 probability clipped to 1 - 1e-12 rounds to 1.0, and log(0) followed.
    z = (logits[:, 1].astype(np.float64) - logits[:, 0]) / temperature
    return float(np.mean(np.logaddexp(0.0, np.where(labels == 1, -z, z))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising validation NLL: a coarse log grid, then a golden-section refinement."""
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 121))
    losses = [nll(logits, labels, float(t)) for t in grid]
    i = int(np.argmin(losses))
    lo, hi = np.log(grid[max(i - 1, 0)]), np.log(grid[min(i + 1, len(grid) - 1)])
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if nll(logits, labels, float(np.exp(a))) < nll(logits, labels, float(np.exp(b))):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


def ece(p_defect: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top-label confidence, equal-width bins over 0.5-1."""
    conf = np.maximum(p_defect, 1 - p_defect)
    correct = (p_defect >= 0.5).astype(np.int64) == labels
    edges = np.linspace(0.5, 1.0, bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        mask = (conf >= lo) & ((conf < hi) if hi < 1.0 else (conf <= hi))
        if mask.any():
            total += mask.mean() * abs(float(conf[mask].mean()) - float(correct[mask].mean()))
    return float(total)


def reliability(p_defect: np.ndarray, labels: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Per-bin mean confidence, accuracy and count, for the reliability diagram."""
    conf = np.maximum(p_defect, 1 - p_defect)
    correct = (p_defect >= 0.5).astype(np.int64) == labels
    edges = np.linspace(0.5, 1.0, bins + 1)
    rows = []
    for lo, hi in itertools.pairwise(edges):
        mask = (conf >= lo) & ((conf < hi) if hi < 1.0 else (conf <= hi))
        if mask.any():
            rows.append(
                {
                    "lo": float(lo),
                    "hi": float(hi),
                    "confidence": float(conf[mask].mean()),
                    "accuracy": float(correct[mask].mean()),
                    "count": int(mask.sum()),
                }
            )
    return rows


@dataclass(frozen=True)
class OperatingPoint:
    """Chosen band and what it does on the data it was chosen on."""

    t_ok: float
    t_defect: float
    escapes: int
    false_rejects: int
    unclear: int
    n: int


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return float(np.log(p / (1 - p)))


def _sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + np.exp(-z)))


def choose_thresholds(
    p_defect: np.ndarray,
    labels: np.ndarray,
    max_escapes: int = 0,
    max_false_rejects: int = 0,
    margin: float = 0.0,
) -> OperatingPoint:
    """Smallest-unclear band with at most `max_escapes` escapes and `max_false_rejects` false rejects.

    Each side is independent: `ok` needs p_ok >= t_ok, so t_ok is set just above the (max_escapes+1)-th
    highest
    p_ok among defects; likewise t_defect from the oks. `margin` (in logit units) moves both further out,
    because the validation set's worst case is an optimistic estimate of the next set's.
    """
    p_ok = 1.0 - p_defect
    defects_p_ok = np.sort(p_ok[labels == 1])[::-1]
    oks_p_defect = np.sort(p_defect[labels == 0])[::-1]

    def side(worst: np.ndarray, allowed: int) -> float:
        if len(worst) <= allowed:
            return 0.5
        # Strictly above the (allowed+1)-th worst, plus the margin; never below 0.5 (the band's rule).
        w = float(worst[allowed])
        # The logit round trip can land an ulp below w (seen at margin 0 for w = 0.9): never below it.
        bound = max(_sigmoid(_logit(w) + margin), w)
        return float(min(max(np.nextafter(bound, 1.0), 0.5), 1.0))

    t_ok = side(defects_p_ok, max_escapes)
    t_defect = side(oks_p_defect, max_false_rejects)
    return score(p_defect, labels, t_ok, t_defect)


def require_band(op: OperatingPoint, max_escapes: int, max_false_rejects: int) -> None:
    """ModelError when the band lets through more than allowed: the card must never claim a band it lacks.

    It happens when a wrong label is so confident that its probability rounds to 1.0 in float64, so no
    threshold lies above it.
    """
    if op.escapes > max_escapes or op.false_rejects > max_false_rejects:
        raise ModelError(
            f"no band keeps validation within {max_escapes} escapes and {max_false_rejects} false rejects "
            f"(best: {op.escapes} and {op.false_rejects}, t_ok {op.t_ok}, t_defect {op.t_defect}): some "
            "wrong labels are certain to float precision; the model is not exported"
        )


def score(p_defect: np.ndarray, labels: np.ndarray, t_ok: float, t_defect: float) -> OperatingPoint:
    """What a band does on labelled outputs: escapes, false rejects and unclear."""
    said_ok = (1.0 - p_defect >= t_ok) & ~(p_defect >= t_defect)
    said_defect = (p_defect >= t_defect) & ~(1.0 - p_defect >= t_ok)
    return OperatingPoint(
        t_ok=t_ok,
        t_defect=t_defect,
        escapes=int((said_ok & (labels == 1)).sum()),
        false_rejects=int((said_defect & (labels == 0)).sum()),
        unclear=int((~said_ok & ~said_defect).sum()),
        n=len(labels),
    )


MARGINS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)


def margin_risk(
    p_defect: np.ndarray,
    labels: np.ndarray,
    margins: tuple[float, ...] = MARGINS,
    folds: int = 10,
    repeats: int = 20,
    seed: int = 0,
) -> list[dict[str, float]]:
    """The zero-escape rule at each margin, out of sample: repeated k-fold cross-validation of the band.

    On the photos it is chosen on, the band lets nothing through by construction. Chosen on k-1 folds and
    scored on the one left out, it shows what the rule lets through on photos it has not seen: escapes
    per 1,000 defects and false rejects per 1,000 ok parts, beside the band and unclear rate the margin
    gives on all the photos. Each band is fitted on (k-1)/k of them, so the rates lean pessimistic.
    """
    rng = np.random.default_rng(seed)
    n_defect, n_ok = int((labels == 1).sum()), int((labels == 0).sum())
    splits = [np.array_split(rng.permutation(len(labels)), folds) for _ in range(repeats)]
    rows = []
    for margin in margins:
        full = choose_thresholds(p_defect, labels, 0, 0, margin)
        escapes = false_rejects = unclear = 0
        for parts in splits:
            for k, held in enumerate(parts):
                fit = np.concatenate([part for j, part in enumerate(parts) if j != k])
                op = choose_thresholds(p_defect[fit], labels[fit], 0, 0, margin)
                out = score(p_defect[held], labels[held], op.t_ok, op.t_defect)
                escapes += out.escapes
                false_rejects += out.false_rejects
                unclear += out.unclear
        rows.append(
            {
                "margin": margin,
                "t_ok": full.t_ok,
                "t_defect": full.t_defect,
                "unclear_rate": full.unclear / max(full.n, 1),
                "cv_escapes_per_1000_defects": 1000 * escapes / max(n_defect * repeats, 1),
                "cv_false_rejects_per_1000_ok": 1000 * false_rejects / max(n_ok * repeats, 1),
                "cv_unclear_rate": unclear / max(len(labels) * repeats, 1),
            }
        )
    return rows


def risk_coverage(p_defect: np.ndarray, labels: np.ndarray, steps: int = 200) -> list[dict[str, float]]:
    """Symmetric band swept from 0.5 to ~1: unclear rate against escape rate and wrong-verdict rate."""
    rows = []
    n = max(len(labels), 1)
    # Even steps in logit space: the interesting thresholds crowd near 1 (0.999, 0.9999, ...).
    for t in 1.0 / (1.0 + np.exp(-np.linspace(0.0, 14.0, steps))):
        op = score(p_defect, labels, float(t), float(t))
        rows.append(
            {
                "threshold": float(t),
                "unclear_rate": op.unclear / n,
                "escape_rate": op.escapes / n,
                "error_rate": (op.escapes + op.false_rejects) / n,
            }
        )
    return rows
