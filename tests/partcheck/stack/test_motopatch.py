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


def test_batch_delete_honours_each_objects_etag_as_s3_does(moto):
    s3 = client("s3", AwsConfig(endpoint_url=moto))
    s3.create_bucket(Bucket="mp-delete-keys", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    old = s3.put_object(Bucket="mp-delete-keys", Key="changed", Body=b"one")["ETag"]
    s3.put_object(Bucket="mp-delete-keys", Key="changed", Body=b"two")
    same = s3.put_object(Bucket="mp-delete-keys", Key="same", Body=b"s")["ETag"]
    s3.put_object(Bucket="mp-delete-keys", Key="plain", Body=b"p")
    objects = [
        {"Key": "changed", "ETag": old},
        {"Key": "same", "ETag": same.strip('"')},  # S3 accepts the ETag with or without its quotes
        {"Key": "plain"},
        {"Key": "absent", "ETag": same},
    ]
    r = s3.delete_objects(Bucket="mp-delete-keys", Delete={"Objects": objects})
    errors = {e["Key"]: e["Code"] for e in r["Errors"]}
    assert errors == {"changed": "PreconditionFailed", "absent": "NoSuchKey"}
    assert sorted(d["Key"] for d in r["Deleted"]) == ["plain", "same"]
    listed = s3.list_objects_v2(Bucket="mp-delete-keys")["Contents"]
    assert [o["Key"] for o in listed] == ["changed"]
    assert s3.get_object(Bucket="mp-delete-keys", Key="changed")["Body"].read() == b"two"
    # Every object refused: an answer with errors only, not moto's "no objects" MalformedXML.
    r = s3.delete_objects(Bucket="mp-delete-keys", Delete={"Objects": [{"Key": "changed", "ETag": old}]})
    assert [(e["Key"], e["Code"]) for e in r["Errors"]] == [("changed", "PreconditionFailed")]
    assert "Deleted" not in r
    assert s3.head_object(Bucket="mp-delete-keys", Key="changed")["ContentLength"] == 3


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


def _counting(monkeypatch, owner, name):
    """Replace owner.name with a wrapper that counts its calls in the server's threads; returns the counter.

    The test's client runs in the main thread of the same process, and botocore uses some of the same
    functions: those calls are not the server's work.
    """
    import threading

    calls = {"n": 0}
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_delete_finds_the_message_without_asking_every_message_for_its_handles(moto, monkeypatch):
    from botocore.exceptions import ClientError
    from moto.sqs.models import Message

    sqs = client("sqs", AwsConfig(endpoint_url=moto))
    url = sqs.create_queue(QueueName="mp-delete")["QueueUrl"]
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": str(i)} for i in range(10)])
    first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, VisibilityTimeout=0)["Messages"]
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)["Messages"]
    asked = _counting(monkeypatch, Message, "had_receipt_handle")
    # A message received twice can be deleted with its older handle, as moto (and SQS) allow.
    old = first[0]["ReceiptHandle"]
    current = next(m["ReceiptHandle"] for m in again if m["Body"] == first[1]["Body"])
    entries = [{"Id": "old", "ReceiptHandle": old}, {"Id": "current", "ReceiptHandle": current}]
    result = sqs.delete_message_batch(QueueUrl=url, Entries=entries)
    assert sorted(s["Id"] for s in result["Successful"]) == ["current", "old"]
    assert asked["n"] == 0  # moto asked each of the 10 messages twice per delete
    sqs.delete_message(QueueUrl=url, ReceiptHandle=current)  # a second delete is accepted
    with pytest.raises(ClientError) as invalid:
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")
    assert invalid.value.response["Error"]["Code"] == "ReceiptHandleIsInvalid"
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "8"


def test_receipt_handles_are_185_lowercase_letters_drawn_in_one_call(moto, monkeypatch):
    from moto.moto_api._internal import mock_random

    sqs = client("sqs", AwsConfig(endpoint_url=moto))
    url = sqs.create_queue(QueueName="mp-handles")["QueueUrl"]
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "m"} for i in range(5)])
    draws = _counting(monkeypatch, mock_random, "choice")
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=5)["Messages"]
    handles = [m["ReceiptHandle"] for m in received]
    assert len(set(handles)) == 5
    assert all(len(h) == 185 and h.isalpha() and h.islower() for h in handles)
    # moto drew each of the 185 letters of each handle with its own call (925 here); ids draw a few.
    assert draws["n"] < 185


def test_requests_create_no_class_each(moto):
    import gc

    from werkzeug.datastructures import ImmutableMultiDict

    s3 = client("s3", AwsConfig(endpoint_url=moto))
    s3.create_bucket(Bucket="mp-classes", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(Bucket="mp-classes", Key="k", Body=b"x")
    gc.collect()
    gc.disable()  # the classes flask's debug helper made per request live in reference cycles until collected
    try:
        before = len(ImmutableMultiDict.__subclasses__())
        for _ in range(5):
            assert s3.get_object(Bucket="mp-classes", Key="k")["Body"].read() == b"x"
        after = len(ImmutableMultiDict.__subclasses__())
    finally:
        gc.enable()
    assert after == before


def test_actions_are_looked_up_without_listing_the_response_class_each_time(moto, monkeypatch):
    import inspect

    sqs = client("sqs", AwsConfig(endpoint_url=moto))
    url = sqs.create_queue(QueueName="mp-actions")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="warm")
    listings = _counting(monkeypatch, inspect, "getmembers")
    sqs.send_message(QueueUrl=url, MessageBody="again")
    assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2)["Messages"]
    assert listings["n"] == 0


def test_iso_timestamps_are_read_as_botocore_reads_them_without_dateutil(moto, monkeypatch):
    import botocore.utils
    import dateutil.parser

    from partcheck.stack.motopatch import _fast_iso8601

    fast = _fast_iso8601(botocore.utils.parse_to_aware_datetime)
    samples = [
        "2026-12-02T13:00:00Z",
        "2026-12-02T13:00:00.123Z",
        "2026-12-02T13:00:00.123456Z",
        "2026-12-02T13:00:00+00:00",
        "2026-12-02T13:00:00.5Z",  # not the fast form: the original parser answers
        "2026-12-02T13:00:00+02:00",
        "1700000000",
        "Wed, 02 Dec 2026 13:00:00 GMT",
    ]
    for value in samples:
        expected = botocore.utils.parse_to_aware_datetime(value)
        got = fast(value)
        assert (got, repr(got.tzinfo)) == (expected, repr(expected.tzinfo))
    s3 = client("s3", AwsConfig(endpoint_url=moto))
    s3.create_bucket(Bucket="mp-time", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(Bucket="mp-time", Key="src", Body=b"x")
    parsed = _counting(monkeypatch, dateutil.parser, "parse")
    copied = s3.copy_object(Bucket="mp-time", Key="dst", CopySource={"Bucket": "mp-time", "Key": "src"})
    listed = s3.list_objects_v2(Bucket="mp-time")["Contents"]
    assert parsed["n"] == 0
    head = s3.head_object(Bucket="mp-time", Key="dst")
    assert copied["CopyObjectResult"]["LastModified"] == head["LastModified"]
    assert {o["Key"]: o["LastModified"] for o in listed}["dst"] == head["LastModified"]


def test_attribute_names_are_converted_once_not_on_every_send(moto):
    from moto.core.utils import underscores_to_camelcase
    from moto.sqs import models as sqs_models  # `import moto...` would hide the fixture's name

    convert = sqs_models.camelcase_to_underscores
    names = ("ApproximateNumberOfMessages", "VisibilityTimeout", "FifoQueue", "KmsMasterKeyId", "QueueArn")
    for name in names:
        assert convert(name) == convert.__wrapped__(name)
        assert underscores_to_camelcase(convert(name)).lower() == name.lower()
    sqs = client("sqs", AwsConfig(endpoint_url=moto))
    url = sqs.create_queue(QueueName="mp-camel")["QueueUrl"]
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "warm", "MessageBody": "m"}])
    before = convert.cache_info()
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "m"} for i in range(5)])
    after = convert.cache_info()
    assert after.misses == before.misses  # nothing converted again
    assert after.hits >= before.hits + 5 * 10  # each message built the queue's attributes
