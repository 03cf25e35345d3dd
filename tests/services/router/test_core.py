import pytest

from partcheck.messages import Prediction, PredictionMessage
from partcheck.thresholds import Thresholds
from services.router.core import alternate_key, destination_key, object_metadata, route_for

pytestmark = pytest.mark.unit
BAND = Thresholds.single(0.8)


def _p(label, p_defect, reason=None):
    return Prediction(
        label=label,
        confidence=max(p_defect, 1 - p_defect),
        p_defect=p_defect,
        model_name="m",
        model_version="7",
        thresholds=BAND,
        reason=reason,
    )


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        (_p("ok", 0.01), "okay/a/b.jpg"),
        (_p("defect", 0.99), "defect/a/b.jpg"),
        (_p("unclear", 0.5), "unclear/a/b.jpg"),
        (_p("unclear", 0.01, reason="blank frame"), "unclear/a/b.jpg"),
        (None, "rejected/a/b.jpg"),
    ],
)
def test_destination_key(prediction, expected):
    assert destination_key("a/b.jpg", prediction) == expected


def test_router_band_can_only_make_a_verdict_unclear():
    strict = Thresholds(t_ok=0.999, t_defect=0.999)
    assert destination_key("x.jpg", _p("ok", 0.01), strict) == "unclear/x.jpg"
    loose = Thresholds.single(0.5)
    assert destination_key("x.jpg", _p("unclear", 0.3, reason="over-exposed"), loose) == "unclear/x.jpg"


def test_confidence_just_below_threshold_is_unclear():
    # The original compared 0-100 with 0.8, so this never fired; on one scale it does.
    assert route_for(_p("ok", 0.21)).value == "unclear"


def test_alternate_key_keeps_extension():
    assert alternate_key("okay/a/b.jpg", "0123456789abcdef") == "okay/a/b~0123456789ab.jpg"


def test_metadata_is_ascii_and_carries_the_verdict():
    msg = PredictionMessage(
        outcome="classified",
        bucket="in",
        key="l/Käfer.jpg",
        etag="e1",
        prediction=_p("defect", 0.93),
        metadata={"line": "l", "camera": "c1"},
        predicted_at="2026-11-25T00:00:00+00:00",
        event_time="2026-11-25T00:00:00Z",
    )
    meta = object_metadata(msg)
    assert meta["model-label"] == "defect"
    assert float(meta["confidence"]) == pytest.approx(0.93)
    assert meta["line"] == "l"
    assert meta["camera"] == "c1"
    assert meta["source-key"] == "l/K%C3%A4fer.jpg"
    assert all(v.isascii() for v in meta.values())
