import json

import pytest

from partcheck.errors import InvalidInput
from partcheck.messages import Prediction, PredictionMessage
from partcheck.thresholds import Thresholds

pytestmark = pytest.mark.unit


def _prediction(**kw):
    base = {
        "label": "ok",
        "confidence": 0.99,
        "p_defect": 0.01,
        "model_name": "m",
        "model_version": "1",
        "thresholds": Thresholds.single(),
    }
    return Prediction(**{**base, **kw})


def test_round_trip():
    msg = PredictionMessage(
        outcome="classified",
        bucket="b",
        key="k.jpg",
        etag="e",
        prediction=_prediction(),
        metadata={"line": "3"},
        predicted_at="2026-11-25T00:00:00+00:00",
    )
    body = msg.to_json()
    assert json.loads(body)["schema_version"] == 1
    assert PredictionMessage.from_json(body) == msg


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not json",
        "[]",
        "{}",
        '{"schema_version": 2}',
        '{"schema_version": 1, "outcome": "classified", "bucket": "b", "key": "k", "predicted_at": "x"}',
        '{"schema_version": 1, "outcome": "rejected", "bucket": "b", "key": "k", "predicted_at": "x"}',
    ],
)
def test_malformed_bodies_are_invalid_input(body):
    with pytest.raises(InvalidInput):
        PredictionMessage.from_json(body)


def test_confidence_is_on_a_0_1_scale():
    with pytest.raises(ValueError, match="less than or equal to 1"):
        _prediction(confidence=99.0)
