"""The post-export checks' one band over validation and its re-framed copies."""

from __future__ import annotations

import numpy as np
import pytest

from partcheck.errors import InvalidImage
from partcheck.messages import Prediction, Thresholds
from services.predict.preprocess import preprocess
from services.predict.train.validate import band_all_sets, pinhole_sensitivity

pytestmark = pytest.mark.unit

LABELLED = [("a", 1), ("b", 1), ("c", 0), ("d", 0)]


def _p(p_defect: float, reason: str | None = None) -> Prediction:
    return Prediction(
        label="unclear",
        confidence=max(p_defect, 1 - p_defect),
        p_defect=p_defect,
        model_name="m",
        model_version="1",
        thresholds=Thresholds(t_ok=0.9, t_defect=0.9),
        reason=reason,
    )


def test_the_band_covers_the_hardest_photo_of_every_set() -> None:
    sets = {
        # Validation alone would allow t_ok just above 0.8 (the defect "b" at p_ok 0.2 -> 0.8).
        "validation": [_p(0.99), _p(0.2), _p(0.01), _p(0.05)],
        # A shrunk copy of "b" looks more ok (p_ok 0.9): the one band must keep it from an ok verdict.
        "fill70": [_p(0.98), _p(0.1), _p(0.02), _p(0.3)],
    }
    band = band_all_sets(sets, LABELLED, margin=0.0)
    assert band["t_ok"] > 0.9
    assert band["t_defect"] > 0.3
    # No wrong verdict anywhere, and the cost shows as unclear: "b" in both sets, "d" on fill70.
    assert band["unclear_rate"] == {"validation": 0.25, "fill70": 0.5}


def test_refused_photos_count_as_unclear_and_do_not_move_the_band() -> None:
    refused = _p(0.5, reason="blurred: sharpness 0.01 < 0.1")
    band = band_all_sets({"validation": [_p(0.99), refused, _p(0.01), _p(0.02)]}, LABELLED, margin=0.5)
    # Every decided photo is far from 0.5, so both sides sit at the band's floor; the refused defect's
    # placeholder p_defect 0.5 would have pushed t_ok to sigmoid(0.5) = 0.62 had it counted.
    assert band["t_ok"] == 0.5
    assert band["t_defect"] == 0.5
    assert band["unclear_rate"] == {"validation": 0.25}
    assert band["margin"] == 0.5
    as_output = band_all_sets({"validation": [_p(0.99), _p(0.5), _p(0.01), _p(0.02)]}, LABELLED, margin=0.5)
    assert as_output["t_ok"] == pytest.approx(0.6225, abs=1e-3)


def test_the_escape_tradeoff_uses_the_training_margin() -> None:
    from services.predict.train.validate import _tradeoff

    preds: list[Prediction | InvalidImage] = [_p(0.99), _p(0.2), _p(0.01), _p(0.05)]
    tight, wide = _tradeoff(preds, LABELLED, 0.0), _tradeoff(preds, LABELLED, 1.0)
    assert [r["max_escapes"] for r in tight] == [0, 1, 2, 3]
    # The worst defect sits at p_ok 0.8: without a margin the ok side starts just above it, a margin of
    # one logit moves it further (sigmoid(logit(0.8) + 1) = 0.916).
    assert 0.8 <= tight[0]["t_ok"] < 0.81
    assert wide[0]["t_ok"] == pytest.approx(0.916, abs=1e-3)


class _SpotFinder:
    """Stands in for the ONNX classifier: defect where a photo has a pixel 30 % darker than the flange."""

    def predict_many(self, payloads: list[bytes]) -> list[Prediction | InvalidImage]:
        out: list[Prediction | InvalidImage] = []
        for b in payloads:
            dark = float(preprocess(b, 300).min()) < 0.8 * 0.7
            out.append(_p(0.99, None).model_copy(update={"label": "defect" if dark else "ok"}))
        return out


def test_pinhole_sensitivity_copies_the_stamps_at_each_gain_onto_the_flange() -> None:
    flange = np.full((300, 300), 0.8, dtype=np.float32)  # metal everywhere
    stamps = np.zeros((2, 11, 11), dtype=np.float32)
    stamps[:, 5, 5] = -0.4  # 40 % deep as photographed: found at gain 1 and 1.5, not at 0.5 (20 %)
    out = pinhole_sensitivity(_SpotFinder(), [flange] * 4, stamps)  # type: ignore[arg-type]
    assert out["stamps"] == 2
    assert out["0.50"] == {"n": 4, "ok": 1.0, "defect": 0.0, "unclear": 0.0}
    assert out["1.00"]["defect"] == 1.0
    assert out["1.50"]["defect"] == 1.0


def test_split_half_measures_the_rule_on_photos_it_did_not_choose_the_band_on() -> None:
    from services.predict.train.validate import split_half

    labelled = [(f"val/def_{i}.jpeg", 1) for i in range(20)] + [(f"val/ok_{i}.jpeg", 0) for i in range(20)]
    preds: list[Prediction | InvalidImage] = [_p(0.99)] * 20 + [_p(0.01)] * 20
    # One defect that looks ok (p_ok 0.8), and one photo the checks refused: it must not count.
    labelled += [("val/def_hard.jpeg", 1), ("val/def_blurred.jpeg", 1)]
    preds += [_p(0.2), _p(0.5, reason="blurred: sharpness 0.01 < 0.1")]
    halves = split_half(preds, labelled, margin=0.0)
    assert set(halves) == {"a_to_b", "b_to_a"}
    assert sum(r["n"] for r in halves.values()) == 41
    assert all(0 < r["n"] < 41 for r in halves.values())
    # The band chosen without the hard defect lets it through on the other half; the band chosen with it
    # sits above p_ok 0.8 and lets nothing through.
    assert sorted(r["escapes"] for r in halves.values()) == [0, 1]
    strict = next(r for r in halves.values() if r["escapes"] == 0)
    assert strict["t_ok"] > 0.8
    assert all(r["false_rejects"] == 0 and r["unclear_rate"] == 0.0 for r in halves.values())
