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


def _body(**kw):
    """A valid classified message as the predict service sends it, with `kw` merged in."""
    msg = PredictionMessage(
        outcome="classified",
        bucket="b",
        key="k.jpg",
        prediction=_prediction(),
        predicted_at="2026-11-25T00:00:00+00:00",
    )
    return {**json.loads(msg.to_json()), **kw}


def test_the_valid_body_the_next_tests_change_is_accepted():
    assert PredictionMessage.from_json(json.dumps(_body())).key == "k.jpg"


def test_a_body_without_schema_version_is_refused_not_taken_as_version_1():
    body = _body()
    del body["schema_version"]
    with pytest.raises(InvalidInput, match="unsupported schema_version None"):
        PredictionMessage.from_json(json.dumps(body))


@pytest.mark.parametrize("body", [None, 12, ["{}"]])
def test_a_body_that_is_not_text_is_invalid_input(body):
    # json.loads raises TypeError, not JSONDecodeError, for these: still a bad message, never a crash.
    with pytest.raises(InvalidInput, match="not JSON"):
        PredictionMessage.from_json(body)


def test_unknown_fields_are_refused_in_the_message_and_in_its_prediction():
    with pytest.raises(InvalidInput, match="extra"):
        PredictionMessage.from_json(json.dumps(_body(priority="high")))
    body = _body()
    body["prediction"]["label_v2"] = "ok"
    with pytest.raises(InvalidInput, match="extra"):
        PredictionMessage.from_json(json.dumps(body))
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        _prediction(extra_field=1)


@pytest.mark.parametrize(
    ("field", "value"), [("p_defect", 1.0001), ("p_defect", -0.01), ("confidence", -0.01)]
)
def test_probabilities_outside_0_1_are_refused(field, value):
    with pytest.raises(ValueError, match="1 validation error"):
        _prediction(**{field: value})
    body = _body()
    body["prediction"][field] = value
    with pytest.raises(InvalidInput, match=field):
        PredictionMessage.from_json(json.dumps(body))


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_certain_probabilities_are_accepted(value):
    assert _prediction(p_defect=value, confidence=value).p_defect == value
