"""Calibration and operating-point helpers on hand-made logits whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

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
