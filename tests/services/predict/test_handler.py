"""The predict Lambda handler on documented event shapes, against moto over HTTP."""

import json

import pytest

from partcheck.aws import client
from partcheck.consumer import DeadLetters, queue_url_from_arn
from partcheck.messages import PredictionMessage
from partcheck.stack.bootstrap import DLQ_SUFFIX, bootstrap
from partcheck.stack.config import StackSettings
from partcheck.storage import ObjectStore, Queue
from services.predict.handler import Runtime, handle
from tests.conftest import EVENTS
from tests.fakes import FakeClassifier

pytestmark = pytest.mark.integration


@pytest.fixture
def rt(moto, sample_images):
    settings = StackSettings(endpoint_url=moto)
    s3, sqs = client("s3", settings.aws()), client("sqs", settings.aws())
    resources = bootstrap(s3, sqs, settings)
    s3.put_bucket_notification_configuration(Bucket=settings.inbound_bucket, NotificationConfiguration={})
    fake = FakeClassifier()
    image = sample_images["ok"][0].read_bytes()
    fake.learn(image, 0.01)
    store = ObjectStore(s3)
    store.put(settings.inbound_bucket, "line-3/cam-1/2026-11-25/img 0001.jpeg", image)
    runtime = Runtime(
        store,
        Queue(sqs, resources.queue_urls[settings.predictions_queue]),
        fake,
        DeadLetters(sqs),
        queue_url_from_arn(sqs),
        10_000_000,
    )
    return runtime, sqs, resources, settings


def _predictions(rt):
    return [PredictionMessage.from_json(m.body) for m in rt.predictions.receive(10, 1)]


def test_sqs_wrapped_s3_events_report_only_nothing_retryable(rt):
    runtime, sqs, resources, settings = rt
    event = json.loads((EVENTS / "sqs_s3_notification.json").read_text())
    result = handle(event, runtime)
    # The malformed record is dead-lettered with its reason, not retried.
    assert result == {"batchItemFailures": []}
    [msg] = _predictions(runtime)
    assert msg.key == "line-3/cam-1/2026-11-25/img 0001.jpeg"
    assert msg.prediction.label == "ok"
    dlq = resources.queue_urls[settings.uploads_queue + DLQ_SUFFIX]
    parked = sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"])["Messages"]
    assert parked[0]["Body"] == "definitely not an S3 event"
    assert "not JSON" in parked[0]["MessageAttributes"]["reason"]["StringValue"]


def test_direct_s3_event(rt):
    runtime, *_ = rt
    event = json.loads(json.loads((EVENTS / "sqs_s3_notification.json").read_text())["Records"][0]["body"])
    assert handle(event, runtime)["status"] == "ok"
    assert len(_predictions(runtime)) == 1


def test_transient_failure_is_reported_for_retry(rt):
    runtime, sqs, *_ = rt
    event = json.loads((EVENTS / "sqs_s3_notification.json").read_text())
    event["Records"] = event["Records"][:1]
    # The predictions queue vanishing is an outage, not bad input: the record must come back.
    sqs.delete_queue(QueueUrl=runtime.predictions.url)
    result = handle(event, runtime)
    assert result == {"batchItemFailures": [{"itemIdentifier": "33333333-3333-3333-3333-333333333333"}]}
