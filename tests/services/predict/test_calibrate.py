"""Calibration and operating-point helpers on hand-made logits whose answers are known."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from partcheck.errors import ModelError
from services.predict.train import calibrate

pytestmark = pytest.mark.unit


def test_nll_is_finite_for_saturated_float32_logits() -> None:
    logits = np.array([[0.0, 100.0], [0.0, -100.0], [1.0, 2.0]], dtype=np.float32)
    labels = np.array([1, 0, 0])
    # Two confident right answers cost ~0; the third is -log(1 - sigmoid(1)) = log(1 + e).
    assert calibrate.nll(logits, labels, 1.0) == pytest.approx(math.log1p(math.e) / 3)
    wrong = np.array([[0.0, 100.0]], dtype=np.float32)
    assert calibrate.nll(wrong, np.array([0]), 1.0) == pytest.approx(100.0)


def test_zero_escape_band_sits_above_the_most_ok_looking_defect() -> None:
    p_defect = np.array([0.02, 0.10, 0.30, 0.95, 0.60, 0.99])
    labels = np.array([0, 0, 1, 1, 1, 1])
    op = calibrate.choose_thresholds(p_defect, labels, margin=0.0)
    # The worst defect has p_ok 0.70: t_ok just above it; no ok part reaches p_defect 0.5.
    assert op.t_ok > 0.70
    assert op.t_ok == pytest.approx(0.70)
    assert op.t_defect == 0.5
    assert (op.escapes, op.false_rejects, op.unclear) == (0, 0, 1)
    loose = calibrate.choose_thresholds(p_defect, labels, max_escapes=1, margin=0.0)
    assert loose.escapes == 1
    assert loose.unclear < op.unclear


@pytest.mark.parametrize("worst_p_defect", [0.1, 0.3, 0.05, 0.2, 0.15])
def test_at_margin_zero_the_band_is_strictly_above_the_worst_after_rounding(worst_p_defect: float) -> None:
    # sigmoid(logit(0.9)) is 0.8999999999999999 in float64: one ulp up from it is 0.9 itself, which let the
    # worst defect (p_ok 1 - 0.1 = 0.9) through as ok before the bound was kept at or above it.
    p_defect = np.array([0.01, worst_p_defect, 0.99])
    labels = np.array([0, 1, 1])
    op = calibrate.choose_thresholds(p_defect, labels, margin=0.0)
    assert op.t_ok > 1.0 - worst_p_defect
    assert op.escapes == 0
    assert op.unclear == 1


def test_ece_known_answers() -> None:
    # Ten parts at p_defect 0.2 (top label ok, confidence 0.8), three of them defects: right 70 %.
    p = np.full(10, 0.2)
    assert calibrate.ece(p, np.array([1] * 3 + [0] * 7)) == pytest.approx(0.1)
    # Two equal halves: confidence 0.9 and right 90 % (no gap); confidence 0.6 and right 50 % (gap 0.1).
    p = np.array([0.9] * 10 + [0.4] * 10)
    labels = np.array([1] * 9 + [0] + [1] * 5 + [0] * 5)
    assert calibrate.ece(p, labels) == pytest.approx(0.05)
    assert calibrate.ece(np.array([0.0, 1.0]), np.array([0, 1])) == 0.0


@pytest.mark.parametrize("true_t", [0.3, 1.0, 3.0])
def test_fit_temperature_recovers_the_temperature_that_made_the_labels(true_t: float) -> None:
    rng = np.random.default_rng(7)
    z = rng.normal(0.0, 4.0, 20_000)
    labels = (rng.random(z.size) < 1.0 / (1.0 + np.exp(-z / true_t))).astype(np.int64)
    logits = np.stack([np.zeros_like(z), z], axis=1)
    assert calibrate.fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.05)


def test_reliability_bins_and_risk_coverage_sweep() -> None:
    p = np.array([0.05, 0.1, 0.6, 0.95, 0.97, 0.3])
    labels = np.array([0, 0, 0, 1, 1, 1])
    rows = calibrate.reliability(p, labels, bins=5)
    assert sum(r["count"] for r in rows) == 6
    top = rows[-1]  # confidence 0.9-1.0: 0.95, 0.97, 0.95 (p 0.05), 0.9 (p 0.1) all right
    assert (top["count"], top["accuracy"]) == (4, 1.0)
    sweep = calibrate.risk_coverage(p, labels)
    assert sweep[0]["unclear_rate"] == 0.0
    assert sweep[0]["escape_rate"] == pytest.approx(1 / 6)  # p 0.3 is a defect called ok at 0.5
    assert all(a["unclear_rate"] <= b["unclear_rate"] for a, b in itertools.pairwise(sweep))
    assert sweep[-1]["escape_rate"] == 0.0


def test_a_wrong_label_certain_to_float_precision_is_refused_not_written() -> None:
    # A defect with logit gap -30 at temperature 0.69 has p_ok 1.0 exactly: no t_ok lies above it.
    logits = np.array([[0.0, 30.0], [0.0, -30.0], [30.0, 0.0], [-5.0, 5.0]])
    labels = np.array([1, 1, 0, 1])
    p = calibrate.softmax_defect(logits, 0.69)
    op = calibrate.choose_thresholds(p, labels, margin=0.5)
    assert (op.t_ok, op.escapes) == (1.0, 1)
    with pytest.raises(ModelError, match="no band keeps validation within 0 escapes"):
        calibrate.require_band(op, 0, 0)
    calibrate.require_band(calibrate.choose_thresholds(p[[0, 2, 3]], labels[[0, 2, 3]], margin=0.5), 0, 0)


def _one_hard_each(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """n defects at p_ok 0.3 plus one at 0.6, n ok parts at p_defect 0.3 plus one at 0.6."""
    p_defect = np.array([0.7] * n + [0.4] + [0.3] * n + [0.6])
    labels = np.array([1] * (n + 1) + [0] * (n + 1))
    return p_defect, labels


def test_margin_risk_lets_the_hard_photos_through_when_they_are_left_out() -> None:
    p_defect, labels = _one_hard_each()
    rows = calibrate.margin_risk(p_defect, labels, margins=(0.0, 1.5), folds=5, repeats=3)
    bare, wide = rows
    # Chosen on all photos, the band at margin 0 sits just above both hard ones: they alone are unclear.
    assert bare["margin"] == 0.0
    assert bare["t_ok"] > 0.6
    assert bare["t_defect"] > 0.6
    assert bare["unclear_rate"] == pytest.approx(2 / 82)
    # Left out (once per repeat), the band from the rest clamps at 0.5 and both get the wrong verdict.
    assert bare["cv_escapes_per_1000_defects"] == pytest.approx(1000 / 41)
    assert bare["cv_false_rejects_per_1000_ok"] == pytest.approx(1000 / 41)
    # 1.5 logits above p 0.3 is p 0.66: the hard photos fall into the band even when left out.
    assert wide["cv_escapes_per_1000_defects"] == 0.0
    assert wide["cv_false_rejects_per_1000_ok"] == 0.0
    # The price: 1.5 logits above the hard ones (p 0.87) is above every photo, so all are unclear.
    assert wide["unclear_rate"] == 1.0
    assert bare["cv_unclear_rate"] < wide["cv_unclear_rate"]


def test_margin_risk_is_reproducible_from_its_seed() -> None:
    rng = np.random.default_rng(7)
    labels = (rng.random(300) < 0.5).astype(np.int64)
    p_defect = np.clip(labels * 0.8 + rng.normal(0.1, 0.15, 300), 0.001, 0.999)
    first = calibrate.margin_risk(p_defect, labels, seed=3)
    assert first == calibrate.margin_risk(p_defect, labels, seed=3)
    assert [r["margin"] for r in first] == list(calibrate.MARGINS)
    # A wider margin never narrows the band chosen on all photos.
    assert all(a["unclear_rate"] <= b["unclear_rate"] for a, b in itertools.pairwise(first))
