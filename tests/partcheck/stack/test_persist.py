"""moto state survives a restart: snapshot, wipe, restore."""

import json
import time

import httpx
import pytest

from partcheck.aws import AwsConfig, client
from partcheck.stack.bootstrap import DLQ_SUFFIX, bootstrap
from partcheck.stack.config import StackSettings
from partcheck.stack.persist import Snapshotter

pytestmark = pytest.mark.integration


def test_snapshot_round_trip(moto, tmp_path):
    settings = StackSettings(endpoint_url=moto)
    s3, sqs = client("s3", AwsConfig(endpoint_url=moto)), client("sqs", AwsConfig(endpoint_url=moto))
    resources = bootstrap(s3, sqs, settings)
    s3.put_object(
        Bucket=settings.prediction_bucket,
        Key="unclear/old.jpg",
        Body=b"old",
        Metadata={"model-label": "ok"},
        ContentType="image/jpeg",
    )
    time.sleep(1.1)
    s3.put_object(Bucket=settings.prediction_bucket, Key="audit/2026/11/25/x.json", Body=b'{"a": 1}')
    sqs.send_message(
        QueueUrl=resources.queue_urls[settings.predictions_queue],
        MessageBody="pending",
        MessageAttributes={"reason": {"DataType": "String", "StringValue": "why"}},
    )
    before = {
        o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=settings.prediction_bucket)["Contents"]
    }

    snap = Snapshotter(tmp_path, "eu-west-1")
    first = snap.save(s3)
    assert first["objects"] == 2
    blobs = sorted(p.name for p in (tmp_path / "blobs").iterdir())
    snap.save(s3)  # a second save writes no new blob
    assert sorted(p.name for p in (tmp_path / "blobs").iterdir()) == blobs

    httpx.post(f"{moto}/moto-api/reset").raise_for_status()
    with pytest.raises(s3.exceptions.NoSuchBucket):
        s3.list_objects_v2(Bucket=settings.prediction_bucket)

    restored = Snapshotter(tmp_path, "eu-west-1").restore(s3, sqs)
    assert restored["objects"] == 2
    after = {
        o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=settings.prediction_bucket)["Contents"]
    }
    assert after == before  # LastModified kept, so "oldest first" survives a restart
    head = s3.head_object(Bucket=settings.prediction_bucket, Key="unclear/old.jpg")
    assert head["Metadata"] == {"model-label": "ok"}
    assert head["ContentType"] == "image/jpeg"
    assert s3.get_object(Bucket=settings.prediction_bucket, Key="unclear/old.jpg")["Body"].read() == b"old"

    url = sqs.get_queue_url(QueueName=settings.predictions_queue)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"].endswith(
        settings.predictions_queue + DLQ_SUFFIX
    )
    got = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"], WaitTimeSeconds=1)["Messages"]
    assert got[0]["Body"] == "pending"
    assert got[0]["MessageAttributes"]["reason"]["StringValue"] == "why"
    notification = s3.get_bucket_notification_configuration(Bucket=settings.inbound_bucket)
    assert notification["QueueConfigurations"][0]["Events"] == ["s3:ObjectCreated:*"]
