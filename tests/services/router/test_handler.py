"""The router Lambda handler: partial batch failures and dead-lettered poison messages."""

import json

import pytest

from partcheck.aws import client
from partcheck.consumer import DeadLetters, queue_url_from_arn
from partcheck.stack.bootstrap import DLQ_SUFFIX, bootstrap
from partcheck.stack.config import StackSettings
from partcheck.storage import ObjectStore
from services.router.handler import Runtime, handle
from tests.conftest import EVENTS
from tests.fakes import stored_prediction

pytestmark = pytest.mark.integration


def test_batch_routes_good_records_and_dead_letters_poison(moto, sample_images):
    settings = StackSettings(endpoint_url=moto)
    s3, sqs = client("s3", settings.aws()), client("sqs", settings.aws())
    resources = bootstrap(s3, sqs, settings)
    s3.put_bucket_notification_configuration(Bucket=settings.inbound_bucket, NotificationConfiguration={})
    store = ObjectStore(s3)
    image = sample_images["defect"][0].read_bytes()
    good = stored_prediction(store, settings.inbound_bucket, "a/b.jpeg", image, 0.97)
    event = json.loads((EVENTS / "sqs_batch_predictions.json").read_text())
    event["Records"][0]["body"] = good.to_json()
    runtime = Runtime(store, settings.prediction_bucket, None, DeadLetters(sqs), queue_url_from_arn(sqs))

    assert handle(event, runtime) == {"batchItemFailures": []}
    assert [o.key for o in store.list(settings.prediction_bucket)] == ["defect/a/b.jpeg"]
    parked = sqs.receive_message(QueueUrl=resources.queue_urls[settings.predictions_queue + DLQ_SUFFIX])
    assert parked["Messages"][0]["Body"] == "{not json"

    # Storage down: the good record must be retried, not dropped.
    s3.delete_object(Bucket=settings.prediction_bucket, Key="defect/a/b.jpeg")
    store.put(settings.inbound_bucket, "a/b.jpeg", image)
    event["Records"] = event["Records"][:1]
    broken = Runtime(store, "no-such-bucket", None, DeadLetters(sqs), queue_url_from_arn(sqs))
    assert handle(event, broken) == {
        "batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]
    }
