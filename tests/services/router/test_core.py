from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

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


SHA = "0123456789abcdef" * 4
UPLOAD_META = {
    "line": "l 3",
    "camera": "c1",
    "capture-time": "2026-11-24T23:59:58.000Z",
    "sha256": SHA,
    "source-name": "Käfer.jpg",  # predict forwards it; the sorted object does not carry it
}


def _message(prediction, **kw):
    fields = {
        "outcome": "classified" if prediction is not None else "rejected",
        "bucket": "in",
        "key": "l/Käfer.jpg",
        "etag": "e1",
        "prediction": prediction,
        "metadata": UPLOAD_META,
        "predicted_at": "2026-11-25T00:00:02.500000+00:00",
        "event_time": "2026-11-25T00:00:00.123Z",
        "timings_ms": {"download": 3.0, "classify": 12.3456},
    }
    return PredictionMessage(**{**fields, **kw})


def _sorted_at(meta):
    """Pop sorted-at, checking it is the router's clock now, in UTC."""
    sorted_at = datetime.fromisoformat(meta.pop("sorted-at"))
    assert sorted_at.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - sorted_at) < timedelta(seconds=60)
    return sorted_at


def test_metadata_is_ascii_and_carries_the_verdict():
    prediction = Prediction(
        label="defect",
        confidence=0.93,
        p_defect=0.93,
        model_name="tiny",
        model_version="v7",
        thresholds=Thresholds(t_ok=0.95, t_defect=0.85),
        ood_score=1.25,
    )
    meta = object_metadata(_message(prediction))
    _sorted_at(meta)
    assert meta == {
        "source-key": "l/K%C3%A4fer.jpg",
        "source-bucket": "in",
        "source-etag": "e1",
        "uploaded-at": "2026-11-25T00:00:00.123Z",  # the upload event's time, not the prediction's
        "predicted-at": "2026-11-25T00:00:02.500000+00:00",
        "line": "l 3",
        "camera": "c1",
        "capture-time": "2026-11-24T23:59:58.000Z",
        "sha256": SHA,
        "model-label": "defect",
        "confidence": "0.930000",
        "p-defect": "0.930000",
        "model-name": "tiny",
        "model-version": "v7",
        "t-ok": "0.950000",
        "t-defect": "0.850000",
        "predict-ms": "12.346",
        "ood-score": "1.250000",
    }
    assert all(v.isascii() for v in meta.values())


def test_metadata_records_the_routers_band_when_it_overrides_the_models():
    meta = object_metadata(_message(_p("defect", 0.93)), Thresholds(t_ok=0.99, t_defect=0.9))
    assert (meta["t-ok"], meta["t-defect"]) == ("0.990000", "0.900000")


def test_metadata_of_a_rejected_image_without_an_event_time():
    message = _message(None, rejection_reason="not an image: größe 0", event_time=None, timings_ms={})
    meta = object_metadata(message)
    _sorted_at(meta)
    assert meta == {
        "source-key": "l/K%C3%A4fer.jpg",
        "source-bucket": "in",
        "source-etag": "e1",
        "uploaded-at": "2026-11-25T00:00:02.500000+00:00",  # no event time: the prediction's stands in
        "predicted-at": "2026-11-25T00:00:02.500000+00:00",
        "line": "l 3",
        "camera": "c1",
        "capture-time": "2026-11-24T23:59:58.000Z",
        "sha256": SHA,
        "reason": "not an image: gr%C3%B6%C3%9Fe 0",
    }


@pytest.mark.parametrize("outcome", ["classified", "rejected"])
def test_metadata_stays_under_s3s_2_kb_for_a_1024_byte_key_and_long_values(outcome):
    long = "Prüfteil " * 120  # 1080 characters, near 1500 once url-quoted
    key = "ä" * 510 + ".jpg"
    assert len(key.encode()) == 1024  # the longest key S3 takes
    message = _message(
        _p("unclear", 0.5, reason=long) if outcome == "classified" else None,
        bucket="b" * 63,
        key=key,
        etag="0123456789abcdef0123456789abcdef-10000",
        rejection_reason=long if outcome == "rejected" else None,
        metadata=dict.fromkeys(("line", "camera", "capture-time", "sha256", "source-name"), long),
        timings_ms={"classify": 123456.789},
    )
    meta = object_metadata(message)
    assert all(v.isascii() and len(v) <= 256 for v in meta.values())
    # 256 characters would end inside the 43rd `%C3%A4`: the cut keeps 42 whole ones.
    assert meta["source-key"] == "%C3%A4" * 42
    for name, value in meta.items():
        assert "%" not in value[-2:], (name, value[-6:])  # no half escape left at the end
        unquote(value, errors="strict")  # no half UTF-8 character either
    # S3 counts the UTF-8 bytes of every metadata name and value: 2 KB in all.
    assert sum(len(k.encode()) + len(v.encode()) for k, v in meta.items()) < 2048


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("x" * 255 + "#tail", "x" * 255),  # the 256th character is the `%` of `%23`
        ("x" * 254 + "?tail", "x" * 254),  # ... the first hex digit of `%3F`
        ("x" * 253 + "ä", "x" * 253),  # a whole escape `%C3`, but half of `%C3%A4`
        ("x" * 250 + "€", "x" * 250),  # two of the three escapes of `%E2%82%AC`
    ],
)
def test_a_value_cut_at_256_characters_still_decodes(text, kept):
    message = _message(_p("unclear", 0.5, reason=text), key=text, metadata={**UPLOAD_META, "line": text})
    meta = object_metadata(message)
    for name in ("reason", "source-key", "line"):
        assert len(meta[name]) <= 256
        assert unquote(meta[name], errors="strict") == kept, (name, meta[name][-6:])


def test_values_shortened_for_the_budget_still_decode():
    # Every descriptive value long and all escapes: the budget halves them, and a half may fall mid-escape.
    long = "€" * 100
    names = {"model_name": long, "model_version": long}
    prediction = _p("unclear", 0.5, reason=long).model_copy(update=names)
    described = ("line", "camera", "capture-time")
    message = _message(prediction, key="ä" * 200, metadata=dict.fromkeys(described, long))
    meta = object_metadata(message)
    assert sum(len(k.encode()) + len(v.encode()) for k, v in meta.items()) <= 1900
    originals = dict.fromkeys(("reason", "model-name", "model-version", *described), long)
    for name, original in {**originals, "source-key": "ä" * 200}.items():
        assert "%" not in meta[name][-2:], (name, meta[name][-6:])
        assert original.startswith(unquote(meta[name], errors="strict")), name


def test_metadata_gives_way_in_its_descriptive_values_when_all_are_long():
    # Every capped value at its 256 characters, a long model name and version besides (a Rekognition
    # project version name can be that long): over 2 KB before the budget.
    long = "x" * 300
    names = {"model_name": long, "model_version": long}
    prediction = _p("unclear", 0.5, reason=long).model_copy(update=names)
    sha = "ab" * 32
    message = _message(
        prediction,
        bucket="b" * 63,
        key="k" * 1000 + ".jpg",
        metadata={"line": long, "camera": long, "capture-time": long, "sha256": sha},
    )
    meta = object_metadata(message)
    assert sum(len(k.encode()) + len(v.encode()) for k, v in meta.items()) <= 1900
    # What identifies the image and its verdict is never shortened.
    assert meta["sha256"] == sha
    assert meta["source-bucket"] == "b" * 63
    assert (meta["model-label"], meta["p-defect"]) == ("unclear", "0.500000")
    assert all(meta[name] for name in ("reason", "model-name", "line", "camera", "source-key"))
