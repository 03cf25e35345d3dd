"""The pure core's batch rule: `predict` returns every verdict or raises naming every bad member."""

from __future__ import annotations

import pytest

from partcheck.errors import InvalidImage
from partcheck.messages import Prediction
from partcheck.thresholds import Thresholds
from services.predict.core import all_or_raise

pytestmark = pytest.mark.unit


def _prediction(label: str) -> Prediction:
    return Prediction(
        label=label,  # type: ignore[arg-type]
        confidence=0.99,
        p_defect=0.99 if label == "defect" else 0.01,
        model_name="m",
        model_version="1",
        thresholds=Thresholds(t_ok=0.9, t_defect=0.9),
    )


def test_all_good_keeps_the_order() -> None:
    results = [_prediction("defect"), _prediction("ok")]
    assert [p.label for p in all_or_raise(results)] == ["defect", "ok"]


def test_a_single_bad_image_raises_its_own_error() -> None:
    error = InvalidImage("empty image (0 bytes)")
    with pytest.raises(InvalidImage) as caught:
        all_or_raise([error])
    assert caught.value is error


def test_a_batch_names_every_bad_member_by_position() -> None:
    results: list[Prediction | InvalidImage] = [
        InvalidImage("empty image (0 bytes)"),
        _prediction("ok"),
        InvalidImage("not a recognised image file"),
    ]
    with pytest.raises(InvalidImage, match=r"image 0: empty image.*; image 2: not a recognised") as caught:
        all_or_raise(results)
    assert "image 1" not in str(caught.value)


def test_an_empty_batch_is_an_empty_list() -> None:
    assert all_or_raise([]) == []
