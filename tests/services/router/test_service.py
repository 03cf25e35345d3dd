"""Router moves against a moto server over HTTP: exactly-once results under at-least-once delivery."""

import json

import pytest

from partcheck.aws import AwsConfig, client
from partcheck.errors import InvalidInput, StorageUnavailable
from partcheck.layout import decision_marker_key
from partcheck.messages import Prediction, PredictionMessage
from partcheck.storage import ObjectStore
from partcheck.thresholds import Thresholds
from services.router.service import Moved, route_message, route_messages

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
    etag = PredictionMessage.from_json(body).etag
    assert etag
    # A second name: under the decided one the review would refuse any decision on the new bytes.
    second = f"unclear/again~{etag[:12]}.jpg"
    assert (result.status, result.destination) == ("moved", second)
    assert store.get(OUT, second).body == b"new image"
    assert "unclear/again.jpg" not in _keys(store, OUT)
    assert _keys(store, IN) == []


def test_bytes_decided_under_their_second_name_stay_decided_on_redelivery(store):
    body = _body(store, "twice.jpg", label="unclear", p=0.5, data=b"second image")
    etag = PredictionMessage.from_json(body).etag
    assert etag
    _marker(store, "unclear/twice.jpg", "first-image-etag")
    _marker(store, f"unclear/twice~{etag[:12]}.jpg", etag)
    result = route_message(body, store, OUT)
    assert result.status == "decided"
    assert [k for k in _keys(store, OUT) if k.startswith("unclear/")] == []
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
        failed = super().delete_many(bucket, {k: etag for k, etag in keys.items() if k != self.refused})
        refused = {self.refused: StorageUnavailable("InternalError")} if self.refused in keys else {}
        return {**failed, **refused}


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


class _ReuploadAfter(ObjectStore):
    """A store where the camera uploads new bytes under the source key right after the router's `step`."""

    def __init__(self, store, step, key, data):
        super().__init__(store._s3)
        self.step, self.key, self.data = step, key, data

    def _reupload(self, bucket, key):
        if (bucket, key) == (IN, self.key) and self.data is not None:
            data, self.data = self.data, None
            super().put(IN, self.key, data)

    def copy(self, source, bucket, key, **kwargs):
        etag = super().copy(source, bucket, key, **kwargs)
        if self.step == "copy":
            self._reupload(*source)
        return etag

    def head(self, bucket, key):
        info = super().head(bucket, key)
        if self.step == "head":
            self._reupload(bucket, key)
        return info


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
def test_bytes_uploaded_between_copy_and_delete_stay_for_their_own_event(store, batch, caplog):
    body = _body(store, "again/a.jpg", data=b"A")
    racing = _ReuploadAfter(store, "copy", "again/a.jpg", b"B")
    with caplog.at_level("INFO", logger="services.router.service"):
        if batch:
            assert route_messages([body], racing, OUT) == [None]
        else:
            assert route_message(body, racing, OUT) == Moved("moved", "defect/again/a.jpg")
    assert store.get(IN, "again/a.jpg").body == b"B"
    assert store.get(OUT, "defect/again/a.jpg").body == b"A"
    assert "holds newer bytes" in caplog.text


def test_a_batch_deletes_the_sources_that_still_hold_their_bytes_and_keeps_the_newer(store):
    bodies = [_body(store, f"mix/{i}.jpg", data=f"img-{i}".encode()) for i in range(3)]
    racing = _ReuploadAfter(store, "copy", "mix/1.jpg", b"new")
    assert route_messages(bodies, racing, OUT) == [None] * 3
    assert _keys(store, IN) == ["mix/1.jpg"]
    assert store.get(IN, "mix/1.jpg").body == b"new"
    assert _keys(store, OUT) == [f"defect/mix/{i}.jpg" for i in range(3)]


def test_a_decided_image_re_uploaded_before_its_source_delete_is_kept(store):
    body = _body(store, "dec2.jpg", label="unclear", p=0.5, data=b"A")
    _marker(store, "unclear/dec2.jpg", PredictionMessage.from_json(body).etag)
    racing = _ReuploadAfter(store, "head", "dec2.jpg", b"B")
    assert route_message(body, racing, OUT).status == "decided"
    assert store.get(IN, "dec2.jpg").body == b"B"
    assert "unclear/dec2.jpg" not in _keys(store, OUT)


def test_a_message_without_an_etag_still_deletes_its_source(store):
    message = PredictionMessage.from_json(_body(store, "old.jpg", data=b"A"))
    body = message.model_copy(update={"etag": None}).to_json()
    racing = _ReuploadAfter(store, "copy", "old.jpg", b"B")
    assert route_message(body, racing, OUT).status == "moved"
    assert _keys(store, IN) == []  # nothing to condition the delete on: the old, unconditional delete


def test_copy_keeps_the_content_type_from_the_message_or_the_name(store):
    body = PredictionMessage.from_json(_body(store, "ct/a.png")).model_copy(
        update={"content_type": "image/png"}
    )
    route_message(body.to_json(), store, OUT)
    route_message(_body(store, "ct/b.jpg"), store, OUT)
    assert store.head(OUT, "defect/ct/a.png").content_type == "image/png"
    assert store.head(OUT, "defect/ct/b.jpg").content_type == "image/jpeg"


def test_a_second_name_copy_refused_because_the_source_changed_is_retried_not_reported_moved(store):
    route_message(_body(store, "taken.jpg", data=b"first"), store, OUT)
    body = _body(store, "taken.jpg", data=b"second")
    # The camera re-uploads right after the router reads the source, before the copy to the second name.
    racing = _ReuploadAfter(store, "head", "taken.jpg", b"third")
    with pytest.raises(StorageUnavailable, match="nothing of these bytes"):
        route_message(body, racing, OUT)
    assert store.get(IN, "taken.jpg").body == b"third"
    assert _keys(store, OUT) == ["defect/taken.jpg"]
    # The redelivery finds newer bytes under the key: stale, and they bring their own event.
    assert route_message(body, store, OUT) == Moved("stale", None)
