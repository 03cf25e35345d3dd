"""The whole flow on moto over HTTP: real S3 notifications to SQS, predict and router workers running."""

from __future__ import annotations

import json
import threading
import time

import pytest

from partcheck.aws import client
from partcheck.messages import PredictionMessage
from partcheck.stack.bootstrap import DLQ_SUFFIX, bootstrap
from partcheck.stack.config import StackSettings
from partcheck.storage import ObjectStore, Queue
from services.predict import worker as predict_worker
from services.predict.settings import PredictSettings
from services.router import worker as router_worker
from services.router.settings import RouterSettings
from tests.fakes import FakeClassifier
from tests.images import png_bomb, solid, truncated

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(moto, sample_images):
    settings = StackSettings(endpoint_url=moto, max_receive_count=2, visibility_timeout=2)
    s3, sqs = client("s3", settings.aws()), client("sqs", settings.aws())
    resources = bootstrap(s3, sqs, settings)
    fake = FakeClassifier()
    for path in sample_images["defect"]:
        fake.learn(path.read_bytes(), 0.98)
    for path in sample_images["ok"]:
        fake.learn(path.read_bytes(), 0.02)
    stop = threading.Event()
    common = {"endpoint_url": moto, "wait_seconds": 1, "visibility_timeout": 2}
    threads = [
        threading.Thread(
            target=predict_worker.run,
            daemon=True,
            args=(PredictSettings(**common, max_image_bytes=200_000), stop, fake),
        ),
        threading.Thread(target=router_worker.run, daemon=True, args=(RouterSettings(**common), stop)),
    ]
    for t in threads:
        t.start()
    yield settings, ObjectStore(s3), sqs, resources, fake
    stop.set()
    for t in threads:
        t.join(10)


def _wait(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _where(store, bucket):
    return {o.key: o for o in store.list(bucket)}


def test_images_are_sorted_exactly_once_and_inbound_empties(stack, sample_images):
    settings, store, _, _, _fake = stack
    uploads = {}
    for i, path in enumerate(sample_images["defect"][:4] + sample_images["ok"][:4]):
        key = f"line-3/cam-1/2026-11-25/{i:02d} {path.name}"
        store.put(
            settings.inbound_bucket, key, path.read_bytes(), metadata={"line": "line-3", "camera": "cam-1"}
        )
        uploads[key] = "defect" if "def" in path.name else "okay"
    # An image the model cannot decide on goes to unclear/.
    unknown = solid(128)
    store.put(settings.inbound_bucket, "line-3/Käfer #7.jpeg", unknown)
    uploads["line-3/Käfer #7.jpeg"] = "unclear"

    assert _wait(lambda: len(_where(store, settings.prediction_bucket)) == len(uploads))
    assert _wait(lambda: not _where(store, settings.inbound_bucket))
    sorted_keys = _where(store, settings.prediction_bucket)
    assert sorted(sorted_keys) == sorted(f"{route}/{key}" for key, route in uploads.items())
    meta = store.head(
        settings.prediction_bucket, "defect/line-3/cam-1/2026-11-25/00 " + sample_images["defect"][0].name
    ).metadata
    assert meta["model-label"] == "defect"
    assert meta["line"] == "line-3"


def test_bad_inputs_end_in_rejected_with_a_reason(stack, sample_images):
    settings, store, _, _, _ = stack
    good = sample_images["ok"][0].read_bytes()
    bad = {
        "empty.jpg": b"",
        "text.jpg": b"hello",
        "cut.jpg": truncated(good),
        "bomb.png": png_bomb(),
        "huge.jpg": good + b"\0" * 250_000,
    }
    for key, body in bad.items():
        store.put(settings.inbound_bucket, key, body)
    assert _wait(lambda: len(_where(store, settings.prediction_bucket)) == len(bad))
    for key in bad:
        info = store.head(settings.prediction_bucket, f"rejected/{key}")
        assert info is not None, key
        assert info.metadata["reason"]
    assert "over the limit" in store.head(settings.prediction_bucket, "rejected/huge.jpg").metadata["reason"]


def test_duplicate_s3_events_leave_one_object(stack, sample_images):
    settings, store, sqs, resources, _fake = stack
    body = sample_images["defect"][1].read_bytes()
    store.put(settings.inbound_bucket, "dup.jpeg", body)
    event = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": settings.inbound_bucket}, "object": {"key": "dup.jpeg"}},
            }
        ]
    }
    uploads = Queue(sqs, resources.queue_urls[settings.uploads_queue])
    for _ in range(3):
        uploads.send(json.dumps(event))
    assert _wait(lambda: "defect/dup.jpeg" in _where(store, settings.prediction_bucket))
    assert _wait(
        lambda: (
            sum(
                q["visible"] + q["in_flight"]
                for q in (
                    uploads.counts(),
                    Queue(sqs, resources.queue_urls[settings.predictions_queue]).counts(),
                )
            )
            == 0
        )
    )
    assert list(_where(store, settings.prediction_bucket)) == ["defect/dup.jpeg"]


def test_malformed_messages_land_in_the_dead_letter_queues_with_a_reason(stack):
    settings, _, sqs, resources, _ = stack
    Queue(sqs, resources.queue_urls[settings.uploads_queue]).send("{not json")
    Queue(sqs, resources.queue_urls[settings.predictions_queue]).send('{"schema_version": 1}')
    unknown = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectRemoved:Delete",
                "s3": {"bucket": {"name": "x"}, "object": {"key": "k"}},
            }
        ]
    }
    Queue(sqs, resources.queue_urls[settings.uploads_queue]).send(json.dumps(unknown))
    reasons = []
    for name, expected in ((settings.uploads_queue, 2), (settings.predictions_queue, 1)):
        dlq = resources.queue_urls[name + DLQ_SUFFIX]

        def arrived(dlq=dlq, expected=expected):
            return (
                int(
                    sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])[
                        "Attributes"
                    ]["ApproximateNumberOfMessages"]
                )
                >= expected
            )

        assert _wait(arrived)
        got = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
        reasons += [m["MessageAttributes"]["reason"]["StringValue"] for m in got["Messages"]]
    assert any("not JSON" in r for r in reasons)
    assert any("ObjectRemoved" in r for r in reasons)
    assert any("invalid prediction message" in r or "without" in r for r in reasons)


def test_router_killed_between_copy_and_delete_recovers(stack, sample_images):
    settings, store, sqs, resources, fake = stack
    # Stand-in for a router that died after its copy: the copy exists and the message is redelivered.
    body = sample_images["ok"][2].read_bytes()
    etag = store.put(settings.inbound_bucket, "half.jpeg", body)
    assert _wait(lambda: "okay/half.jpeg" in _where(store, settings.prediction_bucket))
    store.put(settings.inbound_bucket, "half.jpeg", body)  # the source still there, as after the crash
    msg = PredictionMessage(
        outcome="classified",
        bucket=settings.inbound_bucket,
        key="half.jpeg",
        etag=etag,
        prediction=fake.predict([body])[0],
        predicted_at="2026-11-25T00:00:00+00:00",
    )
    Queue(sqs, resources.queue_urls[settings.predictions_queue]).send(msg.to_json())
    assert _wait(lambda: not _where(store, settings.inbound_bucket))
    assert list(_where(store, settings.prediction_bucket)) == ["okay/half.jpeg"]
