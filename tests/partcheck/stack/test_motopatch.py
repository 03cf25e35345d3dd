"""moto's patched hot paths answer exactly as the originals do."""

import time

import pytest

from partcheck.aws import AwsConfig, client

pytestmark = pytest.mark.integration


def test_receive_still_honours_the_retention_period(moto):
    sqs = client("sqs", AwsConfig(endpoint_url=moto))
    url = sqs.create_queue(QueueName="mp-retention", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="fresh")
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"]] == [
        "fresh"
    ]
    # Ageing the message past its retention through moto's model: receive must now refuse it.
    from moto.sqs.models import sqs_backends

    backend = sqs_backends["123456789012"]["eu-west-1"]
    [message] = backend.get_queue("mp-retention")._messages
    message.sent_timestamp = int((time.time() - 120) * 1000)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)


def test_queue_counts_are_exact_after_sends(moto):
    sqs = client("sqs", AwsConfig(endpoint_url=moto))
    url = sqs.create_queue(QueueName="mp-counts")["QueueUrl"]
    for i in range(7):
        sqs.send_message(QueueUrl=url, MessageBody=str(i))
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "b"} for i in range(3)])
    sqs.send_message(QueueUrl=url, MessageBody="late", DelaySeconds=60)
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, VisibilityTimeout=60)
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "8"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "2"
    assert attrs["ApproximateNumberOfMessagesDelayed"] == "1"


def test_fifo_content_deduplication_still_reads_the_queue_flag(moto):
    sqs = client("sqs", AwsConfig(endpoint_url=moto))
    url = sqs.create_queue(
        QueueName="mp-dedup.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )["QueueUrl"]
    for _ in range(3):
        sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "1"


def test_copy_honours_if_none_match_and_copy_source_if_match_as_s3_does(moto):
    from botocore.exceptions import ClientError

    s3 = client("s3", AwsConfig(endpoint_url=moto))
    s3.create_bucket(Bucket="mp-copy", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    etag = s3.put_object(Bucket="mp-copy", Key="src", Body=b"one")["ETag"]
    source = {"Bucket": "mp-copy", "Key": "src"}
    s3.copy_object(Bucket="mp-copy", Key="dst", CopySource=source, IfNoneMatch="*", CopySourceIfMatch=etag)
    assert s3.get_object(Bucket="mp-copy", Key="dst")["Body"].read() == b"one"
    with pytest.raises(ClientError) as taken:
        s3.copy_object(Bucket="mp-copy", Key="dst", CopySource=source, IfNoneMatch="*")
    assert taken.value.response["Error"]["Code"] == "PreconditionFailed"
    s3.put_object(Bucket="mp-copy", Key="src", Body=b"two")
    with pytest.raises(ClientError) as stale:
        s3.copy_object(Bucket="mp-copy", Key="other", CopySource=source, CopySourceIfMatch=etag)
    assert stale.value.response["Error"]["Code"] == "PreconditionFailed"
    with pytest.raises(ClientError) as missing:
        s3.copy_object(
            Bucket="mp-copy", Key="x", CopySource={"Bucket": "mp-copy", "Key": "nope"}, CopySourceIfMatch=etag
        )
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"


def test_a_long_poll_returns_as_soon_as_a_message_arrives(moto):
    import threading

    sqs = client("sqs", AwsConfig(endpoint_url=moto))
    url = sqs.create_queue(QueueName="mp-longpoll")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="in flight")
    sqs.receive_message(QueueUrl=url, VisibilityTimeout=60)  # an invisible message must not wake anyone
    timer = threading.Timer(0.5, lambda: sqs.send_message(QueueUrl=url, MessageBody="new"))
    timer.start()
    started = time.monotonic()
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10).get("Messages", [])
    waited = time.monotonic() - started
    timer.join()
    assert [m["Body"] for m in got] == ["new"]
    assert 0.4 < waited < 5  # woke for the new message, not at the end of the 10-second poll
