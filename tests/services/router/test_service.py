"""Router moves against a moto server over HTTP: exactly-once results under at-least-once delivery."""

import json

import pytest

from partcheck.aws import AwsConfig, client
from partcheck.errors import InvalidInput, StorageUnavailable
from partcheck.layout import decision_marker_key
from partcheck.messages import Prediction, PredictionMessage
from partcheck.storage import ObjectStore
from partcheck.thresholds import Thresholds
from services.router.service import route_message, route_messages

pytestmark = pytest.mark.integration
IN, OUT = "pc-in", "pc-out"


@pytest.fixture
def store(moto):
    s3 = client("s3", AwsConfig(endpoint_url=moto))
    for b in (IN, OUT):
        s3.create_bucket(Bucket=b, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return ObjectStore(s3)


def _body(store, key, label="defect", p=0.97, data=b"image-bytes", outcome="classified"):
    etag = store.put(IN, key, data, metadata={"line": "3", "camera": "c1"})
    prediction = (
        None
        if outcome == "rejected"
        else Prediction(
            label=label,
            confidence=max(p, 1 - p),
            p_defect=p,
            model_name="m",
            model_version="1",
            thresholds=Thresholds.single(),
        )
    )
    return PredictionMessage(
        outcome=outcome,
        bucket=IN,
        key=key,
        etag=etag,
        prediction=prediction,
        rejection_reason="not an image" if outcome == "rejected" else None,
        metadata={"line": "3", "camera": "c1"},
        predicted_at="2026-11-25T00:00:00+00:00",
    ).to_json()


def _keys(store, bucket):
    return sorted(o.key for o in store.list(bucket))


def test_move_sets_metadata_and_empties_inbound(store):
    body = _body(store, "l3/c1/a.jpg")
    result = route_message(body, store, OUT)
    assert result.status == "moved"
    assert _keys(store, IN) == []
    assert _keys(store, OUT) == ["defect/l3/c1/a.jpg"]
    info = store.head(OUT, "defect/l3/c1/a.jpg")
    assert info.metadata["model-label"] == "defect"
    assert info.metadata["line"] == "3"
    assert store.get(OUT, "defect/l3/c1/a.jpg").body == b"image-bytes"


def test_duplicate_delivery_leaves_one_object(store):
    body = _body(store, "dup.jpg", label="ok", p=0.01)
    first = route_message(body, store, OUT)
    second = route_message(body, store, OUT)
    assert (first.status, second.status) == ("moved", "already-done")
    assert _keys(store, OUT) == ["okay/dup.jpg"]


def test_crash_between_copy_and_delete_recovers(store):
    body = _body(store, "crash.jpg")
    src = store.get(IN, "crash.jpg")
    # Simulate the first attempt dying after its conditional write: destination exists, source too.
    msg = PredictionMessage.from_json(body)
    from services.router.core import object_metadata

    store.put(OUT, "defect/crash.jpg", src.body, metadata=object_metadata(msg), if_absent=True)
    result = route_message(body, store, OUT)
    assert result.status == "moved"
    assert _keys(store, IN) == []
    assert _keys(store, OUT) == ["defect/crash.jpg"]


def test_different_image_under_a_used_name_is_kept_beside_it(store):
    route_message(_body(store, "same.jpg", data=b"first"), store, OUT)
    result = route_message(_body(store, "same.jpg", data=b"second"), store, OUT)
    assert result.destination.startswith("defect/same~")
    assert len(_keys(store, OUT)) == 2
    assert store.get(OUT, "defect/same.jpg").body == b"first"


def _marker(store, unclear_key, source_etag):
    # Built by the review service's own function, so a change of its format shows here.
    from datetime import UTC, datetime

    from services.review.core import decision_keys, marker_record

    keys = decision_keys(unclear_key, "ok")
    record = marker_record(
        keys, "ok", "alice", datetime.now(UTC), None, {"source-etag": source_etag}, "image/jpeg", "audit/x"
    )
    store.put(OUT, keys.marker_key, json.dumps(record).encode())


def test_human_decision_is_never_undone_by_a_redelivery(store):
    body = _body(store, "dec.jpg", label="unclear", p=0.5)
    _marker(store, "unclear/dec.jpg", PredictionMessage.from_json(body).etag)
    result = route_message(body, store, OUT)
    assert result.status == "decided"
    assert "unclear/dec.jpg" not in _keys(store, OUT)
    assert _keys(store, IN) == []


@pytest.mark.parametrize("marker", ["other-bytes", None])
def test_new_bytes_under_a_decided_name_are_routed_not_deleted(store, marker):
    body = _body(store, "again.jpg", label="unclear", p=0.5, data=b"new image")
    if marker is None:
        store.put(OUT, decision_marker_key("unclear/again.jpg"), b"not json")
    else:
        _marker(store, "unclear/again.jpg", marker)
    result = route_message(body, store, OUT)
    assert result.status == "moved"
    assert "unclear/again.jpg" in _keys(store, OUT)
    assert _keys(store, IN) == []


def test_stale_prediction_does_not_move_newer_bytes(store):
    body = _body(store, "stale.jpg", data=b"old")
    store.put(IN, "stale.jpg", b"new bytes")
    assert route_message(body, store, OUT).status == "stale"
    assert _keys(store, IN) == ["stale.jpg"]


def test_rejected_goes_to_rejected_with_reason(store):
    body = _body(store, "bad.jpg", outcome="rejected")
    route_message(body, store, OUT)
    assert store.head(OUT, "rejected/bad.jpg").metadata["reason"] == "not an image"


def test_source_gone_without_destination_is_acknowledged(store):
    body = _body(store, "gone.jpg")
    store.delete(IN, "gone.jpg")
    assert route_message(body, store, OUT).status == "gone"


def test_malformed_body_is_invalid_input(store):
    with pytest.raises(InvalidInput):
        route_message('{"schema_version": 1}', store, OUT)


def test_router_threshold_override(store):
    body = _body(store, "strict.jpg", label="defect", p=0.9)
    route_message(body, store, OUT, Thresholds.single(0.95))
    assert _keys(store, OUT) == ["unclear/strict.jpg"]


class _DeleteFails(ObjectStore):
    """A store whose batch delete refuses one key, as S3 reports per-key errors."""

    def __init__(self, store, refused):
        super().__init__(store._s3)
        self.refused = refused

    def delete_many(self, bucket, keys):
        failed = super().delete_many(bucket, [k for k in keys if k != self.refused])
        return {**failed, **({self.refused: "InternalError"} if self.refused in keys else {})}


def test_a_batch_moves_each_image_once_and_deletes_sources_together(store):
    bodies = [_body(store, f"batch/{i}.jpg", data=f"img-{i}".encode()) for i in range(5)]
    bodies.append(bodies[0])  # a duplicate delivery inside the same batch
    bodies.append("not json")
    outcomes = route_messages(bodies, store, OUT)
    assert outcomes[:6] == [None] * 6
    assert isinstance(outcomes[6], InvalidInput)
    assert _keys(store, IN) == []
    assert _keys(store, OUT) == [f"defect/batch/{i}.jpg" for i in range(5)]


def test_a_source_that_could_not_be_deleted_fails_only_its_message(store):
    bodies = [_body(store, f"part/{i}.jpg", data=f"img-{i}".encode()) for i in range(3)]
    flaky = _DeleteFails(store, "part/1.jpg")
    outcomes = route_messages(bodies, flaky, OUT)
    assert outcomes[0] is None
    assert outcomes[2] is None
    assert isinstance(outcomes[1], StorageUnavailable)
    assert _keys(store, IN) == ["part/1.jpg"]
    # The redelivery finds its copy already written and finishes the move.
    assert route_messages([bodies[1]], store, OUT) == [None]
    assert _keys(store, IN) == []
    assert _keys(store, OUT) == [f"defect/part/{i}.jpg" for i in range(3)]


def test_copy_keeps_the_content_type_from_the_message_or_the_name(store):
    body = PredictionMessage.from_json(_body(store, "ct/a.png")).model_copy(
        update={"content_type": "image/png"}
    )
    route_message(body.to_json(), store, OUT)
    route_message(_body(store, "ct/b.jpg"), store, OUT)
    assert store.head(OUT, "defect/ct/a.png").content_type == "image/png"
    assert store.head(OUT, "defect/ct/b.jpg").content_type == "image/jpeg"
