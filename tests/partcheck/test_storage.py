"""ObjectStore's conditional deletes against a moto server over HTTP: newer bytes under a key survive."""

import pytest

from partcheck.aws import AwsConfig, client
from partcheck.errors import AlreadyExists, NotFound, StorageUnavailable
from partcheck.storage import ObjectStore, Queue

pytestmark = pytest.mark.integration
BUCKET = "st-delete"


@pytest.fixture
def store(moto):
    s3 = client("s3", AwsConfig(endpoint_url=moto))
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return ObjectStore(s3)


def test_delete_if_match_keeps_newer_bytes_and_deletes_the_matching_ones(store):
    old = store.put(BUCKET, "k.jpg", b"A")
    new = store.put(BUCKET, "k.jpg", b"B")
    with pytest.raises(AlreadyExists):
        store.delete(BUCKET, "k.jpg", if_match=old)
    assert store.get(BUCKET, "k.jpg").body == b"B"
    store.delete(BUCKET, "k.jpg", if_match=new)
    assert store.head(BUCKET, "k.jpg") is None
    store.delete(BUCKET, "k.jpg", if_match=new)  # absent: fine, as an unconditional delete
    with pytest.raises(NotFound):
        store.delete("st-no-such-bucket", "k.jpg", if_match=new)


def test_delete_many_deletes_each_key_only_while_it_has_its_etag(store):
    kept = store.put(BUCKET, "changed.jpg", b"A")
    store.put(BUCKET, "changed.jpg", b"B")
    same = store.put(BUCKET, "same.jpg", b"S")
    store.put(BUCKET, "plain.jpg", b"P")
    failed = store.delete_many(
        BUCKET, {"changed.jpg": kept, "same.jpg": same, "plain.jpg": None, "absent.jpg": same}
    )
    assert list(failed) == ["changed.jpg"]
    assert isinstance(failed["changed.jpg"], AlreadyExists)
    assert [o.key for o in store.list(BUCKET)] == ["changed.jpg"]
    assert store.get(BUCKET, "changed.jpg").body == b"B"


def test_delete_many_still_takes_plain_keys_and_reports_other_failures_apart(store):
    store.put(BUCKET, "a.jpg", b"a")
    assert store.delete_many(BUCKET, ["a.jpg", "absent.jpg"]) == {}
    assert list(store.list(BUCKET)) == []
    failed = store.delete_many("st-no-such-bucket", ["a.jpg"])
    assert isinstance(failed["a.jpg"], NotFound)


def test_delete_batch_says_how_many_and_which_messages_were_not_deleted(moto):
    sqs = client("sqs", AwsConfig(endpoint_url=moto))
    queue = Queue(sqs, sqs.create_queue(QueueName="st-acks")["QueueUrl"])
    queue.send_batch([f"m{n}" for n in range(12)])
    handles: list[str] = []
    for _ in range(10):
        handles += [m.receipt_handle for m in queue.receive(10, 0, 60)]
        if len(handles) == 12:
            break
    assert len(handles) == 12
    handles[3] = "not-a-receipt-handle"

    with pytest.raises(StorageUnavailable) as caught:
        queue.delete_batch(handles)

    assert "1 of 12 messages not deleted" in str(caught.value)
    assert "positions [3]" in str(caught.value)
    assert "ReceiptHandleIsInvalid" in str(caught.value)
    # The chunk after the failed one was still deleted: only the message at position 3 is left.
    assert queue.counts() == {"visible": 0, "in_flight": 1, "delayed": 0}
