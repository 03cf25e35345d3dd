"""moto state survives a restart: snapshot, wipe, restore."""

import json
import time

import httpx
import pytest

from partcheck.aws import AwsConfig, client
from partcheck.errors import InvalidInput
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


def _clients(moto: str, region: str):
    aws = AwsConfig(endpoint_url=moto, region=region)
    return client("s3", aws), client("sqs", aws)


def test_snapshot_keeps_every_region(moto, tmp_path):
    # The server defaults to eu-west-1 (as `partcheck moto` without --region does); the stack lives elsewhere.
    s3, sqs = _clients(moto, "eu-central-1")
    settings = StackSettings(endpoint_url=moto, region="eu-central-1")
    resources = bootstrap(s3, sqs, settings)
    sqs.send_message(
        QueueUrl=resources.queue_urls[settings.predictions_queue + DLQ_SUFFIX], MessageBody="parked"
    )
    us_s3, _ = _clients(moto, "us-east-1")
    us_s3.create_bucket(Bucket="partcheck-archive")
    us_s3.put_object(Bucket="partcheck-archive", Key="a.txt", Body=b"a")

    Snapshotter(tmp_path, "eu-west-1").save(s3)
    httpx.post(f"{moto}/moto-api/reset").raise_for_status()
    default_s3, default_sqs = _clients(moto, "eu-west-1")
    Snapshotter(tmp_path, "eu-west-1").restore(default_s3, default_sqs)

    url = sqs.get_queue_url(QueueName=settings.predictions_queue + DLQ_SUFFIX)["QueueUrl"]
    assert (
        ":eu-central-1:"
        in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    )
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in got] == ["parked"]
    assert s3.get_bucket_location(Bucket=settings.inbound_bucket)["LocationConstraint"] == "eu-central-1"
    assert us_s3.get_bucket_location(Bucket="partcheck-archive")["LocationConstraint"] is None
    assert us_s3.get_object(Bucket="partcheck-archive", Key="a.txt")["Body"].read() == b"a"
    notification = s3.get_bucket_notification_configuration(Bucket=settings.inbound_bucket)
    assert notification["QueueConfigurations"][0]["QueueArn"].startswith("arn:aws:sqs:eu-central-1:")
    # An upload after the restore still reaches the uploads queue in the stack's region.
    s3.put_object(Bucket=settings.inbound_bucket, Key="line-1/new.jpg", Body=b"new")
    uploads = sqs.get_queue_url(QueueName=settings.uploads_queue)["QueueUrl"]
    bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=uploads, MaxNumberOfMessages=10)["Messages"]]
    assert any("line-1%2Fnew.jpg" in b for b in bodies)  # S3 events URL-encode keys


def test_bootstrap_in_us_east_1_sends_no_location_constraint(moto):
    s3, sqs = _clients(moto, "us-east-1")
    settings = StackSettings(endpoint_url=moto, region="us-east-1")
    bootstrap(s3, sqs, settings)
    bootstrap(s3, sqs, settings)  # idempotent there too
    assert s3.get_bucket_location(Bucket=settings.inbound_bucket)["LocationConstraint"] is None
    notification = s3.get_bucket_notification_configuration(Bucket=settings.inbound_bucket)
    assert notification["QueueConfigurations"][0]["QueueArn"].startswith("arn:aws:sqs:us-east-1:")


def test_bootstrap_says_when_the_stack_region_changed(moto):
    bootstrap(*_clients(moto, "eu-west-1"), StackSettings(endpoint_url=moto, region="eu-west-1"))
    with pytest.raises(InvalidInput, match="exists in eu-west-1, not in PARTCHECK_REGION eu-central-1"):
        bootstrap(*_clients(moto, "eu-central-1"), StackSettings(endpoint_url=moto, region="eu-central-1"))


def test_save_prunes_bodies_no_object_names(moto, tmp_path):
    s3, sqs = _clients(moto, "eu-west-1")
    settings = StackSettings(endpoint_url=moto)
    bootstrap(s3, sqs, settings)
    bucket = settings.prediction_bucket
    for key, body in (("okay/a.jpg", b"a"), ("okay/b.jpg", b"b"), ("okay/same-as-a.jpg", b"a")):
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    snap = Snapshotter(tmp_path, "eu-west-1")
    snap.save(s3)
    blobs = tmp_path / "blobs"
    assert len(list(blobs.iterdir())) == 2  # a and b; equal bodies share one
    (blobs / ".left.123.tmp").write_bytes(b"from a killed save")
    (blobs / "gone.9").write_bytes(b"named by no manifest")

    s3.delete_object(Bucket=bucket, Key="okay/b.jpg")
    s3.delete_object(Bucket=bucket, Key="okay/a.jpg")  # its body lives on in same-as-a.jpg
    s3.put_object(Bucket=bucket, Key="okay/c.jpg", Body=b"c")
    Snapshotter(tmp_path, "eu-west-1").save(s3)  # a new process: it finds the old files on disk

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    named = {o["blob"] for b in manifest["buckets"] for o in b["objects"]}
    assert {p.name for p in blobs.iterdir()} == named
    assert len(named) == 2  # a (for same-as-a) and c


def _event_keys(sqs, url: str) -> list[str]:
    keys = []
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages"):
        for m in got:
            keys += [r["s3"]["object"]["key"] for r in json.loads(m["Body"]).get("Records", [])]
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return keys


def test_restore_resends_the_event_of_an_inbound_object_whose_message_was_lost(moto, tmp_path, monkeypatch):
    s3, sqs = _clients(moto, "eu-west-1")
    settings = StackSettings(endpoint_url=moto)
    urls = bootstrap(s3, sqs, settings).queue_urls
    uploads, predictions = urls[settings.uploads_queue], urls[settings.predictions_queue]
    _event_keys(sqs, uploads)  # bootstrap's s3:TestEvent
    inbound = settings.inbound_bucket
    for key in ("line-1/moved.jpg", "line-1/waiting.jpg", "line-1/dead.jpg"):
        s3.put_object(Bucket=inbound, Key=key, Body=key.encode())
    events = {}
    for m in sqs.receive_message(QueueUrl=uploads, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]:
        events[json.loads(m["Body"])["Records"][0]["s3"]["object"]["key"]] = m
    assert set(events) == {"line-1%2Fmoved.jpg", "line-1%2Fwaiting.jpg", "line-1%2Fdead.jpg"}
    # predict handled moved.jpg: its message is now a prediction for the router.
    sqs.send_message(
        QueueUrl=predictions, MessageBody=json.dumps({"bucket": inbound, "key": "line-1/moved.jpg"})
    )
    sqs.delete_message(QueueUrl=uploads, ReceiptHandle=events["line-1%2Fmoved.jpg"]["ReceiptHandle"])
    # dead.jpg was dead-lettered: it waits for an operator, not for another attempt.
    sqs.send_message(
        QueueUrl=urls[settings.uploads_queue + DLQ_SUFFIX], MessageBody=events["line-1%2Fdead.jpg"]["Body"]
    )
    sqs.delete_message(QueueUrl=uploads, ReceiptHandle=events["line-1%2Fdead.jpg"]["ReceiptHandle"])

    # The router moves moved.jpg while a snapshot runs: after the inbound bucket was read, before the queues.
    def router_moves(self, s3_client, bucket, moto_bucket):
        if bucket == inbound:
            s3.copy_object(
                Bucket=settings.prediction_bucket,
                Key="okay/line-1/moved.jpg",
                CopySource={"Bucket": inbound, "Key": "line-1/moved.jpg"},
            )
            s3.delete_object(Bucket=inbound, Key="line-1/moved.jpg")
            (m,) = sqs.receive_message(QueueUrl=predictions, WaitTimeSeconds=1)["Messages"]
            sqs.delete_message(QueueUrl=predictions, ReceiptHandle=m["ReceiptHandle"])
        return original(self, s3_client, bucket, moto_bucket)

    original = Snapshotter._notification
    monkeypatch.setattr(Snapshotter, "_notification", router_moves)
    Snapshotter(tmp_path, "eu-west-1").save(s3)
    monkeypatch.undo()

    httpx.post(f"{moto}/moto-api/reset").raise_for_status()
    restored = Snapshotter(tmp_path, "eu-west-1").restore(s3, sqs)
    assert (
        restored["objects"] == 4
    )  # three inbound (moved.jpg among them, as the snapshot saw it), one sorted
    uploads = sqs.get_queue_url(QueueName=settings.uploads_queue)["QueueUrl"]
    # moved.jpg gets its event again (predict and router are idempotent; the router finds its copy done);
    # waiting.jpg keeps its one message, and dead.jpg stays in the dead-letter queue only.
    assert sorted(_event_keys(sqs, uploads)) == ["line-1%2Fmoved.jpg", "line-1%2Fwaiting.jpg"]
    head = s3.head_object(Bucket=inbound, Key="line-1/moved.jpg")
    listed = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=inbound)["Contents"]}
    assert head["LastModified"] == listed["line-1/moved.jpg"]


def test_an_idle_server_is_not_saved_again_and_a_changed_one_is(tmp_path):
    import threading

    from partcheck.stack.keepalive import Changes
    from partcheck.stack.persist import save_periodically

    class Counting:
        saves = 0

        def save(self, s3):
            Counting.saves += 1
            return {"objects": 0, "messages": 0}

    changes, stop = Changes(), threading.Event()
    app = changes.wrap(lambda environ, start_response: [b""])
    args = (Counting(), None, stop, 0.01, changes)
    saver = threading.Thread(target=save_periodically, args=args, daemon=True)
    saver.start()
    try:
        time.sleep(0.2)  # ~20 intervals, nothing changed since the restore
        assert Counting.saves == 0
        app({"REQUEST_METHOD": "GET"}, None)
        app({"REQUEST_METHOD": "POST", "HTTP_X_AMZ_TARGET": "AmazonSQS.ReceiveMessage"}, None)
        time.sleep(0.2)
        assert Counting.saves == 0
        app({"REQUEST_METHOD": "PUT"}, None)
        deadline = time.monotonic() + 5
        while Counting.saves == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert Counting.saves == 1  # once for the change, not again while idle
    finally:
        stop.set()
        saver.join(timeout=5)


def test_a_snapshot_that_fills_half_its_interval_is_warned_about_once(caplog):
    import logging
    import threading

    from partcheck.stack.persist import save_periodically

    class Slow:
        saves = 0

        def save(self, s3):
            Slow.saves += 1
            time.sleep(0.03)  # over half of the 0.02 s interval
            return {"objects": 250_000, "messages": 0}

    stop = threading.Event()
    saver = threading.Thread(target=save_periodically, args=(Slow(), None, stop, 0.02), daemon=True)
    with caplog.at_level(logging.WARNING, logger="partcheck.stack.persist"):
        saver.start()
        deadline = time.monotonic() + 5
        while Slow.saves < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        saver.join(timeout=5)
    assert Slow.saves >= 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # not once per snapshot
    assert "snapshot of 250000 objects took" in warnings[0]
    assert "deploy/README.md" in warnings[0]


def test_durable_saving_groups_waiting_requests_and_retries_a_failed_snapshot(caplog):
    import logging
    import threading

    from partcheck.stack.keepalive import Changes
    from partcheck.stack.persist import save_durably

    gate = threading.Event()

    class Gated:
        starts: list[int] = []
        fail_next = True

        def save(self, s3):
            Gated.starts.append(changes.count)
            if Gated.fail_next:  # the first snapshot fails: nobody may be answered by it
                Gated.fail_next = False
                raise OSError("disk full")
            gate.wait(5)
            return {"objects": 0, "messages": 0}

    changes, stop = Changes(durable=True), threading.Event()
    app = changes.wrap(lambda environ, start_response: [b""])
    saver = threading.Thread(target=save_durably, args=(Gated(), None, stop, 60.0, changes), daemon=True)
    saver.start()
    done: list[float] = []
    requests = [
        threading.Thread(target=lambda: (app({"REQUEST_METHOD": "PUT"}, None), done.append(time.monotonic())))
        for _ in range(6)
    ]
    try:
        for r in requests:
            r.start()
        time.sleep(1.5)  # the failed snapshot, the 1 s pause, then a second one held at the gate
        assert done == []
        code, body = changes.health()
        assert code == 503
        assert body["error"] == "OSError: disk full"
        assert body["changes_not_saved"] == 6
        released = time.monotonic()
        gate.set()
        for r in requests:
            r.join(timeout=5)
        assert changes.health() == (200, {"snapshots": "ok", "changes_not_saved": 0})
        assert len(done) == 6
        assert min(done) >= released
        # Six requests, one failed snapshot and at most two good ones: they were saved together.
        assert 2 <= len(Gated.starts) <= 3
        assert Gated.starts[-1] == 6
    finally:
        stop.set()
        gate.set()
        saver.join(timeout=5)
    # (The snapshot held at the gate is also logged as slow; that is another test's subject.)
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if "took" not in r.getMessage()]
    assert logged == [
        (logging.ERROR, "snapshot failed; uploads and other changes wait unanswered until one succeeds"),
        (logging.WARNING, "snapshot succeeded after 1 failed attempts; waiting changes answered"),
    ]


def test_a_slow_durable_snapshot_is_warned_about_once(caplog, monkeypatch):
    import logging
    import threading

    from partcheck.stack import persist
    from partcheck.stack.keepalive import Changes

    monkeypatch.setattr(persist, "SLOW_COMMIT_S", 0.01)

    class Slow:
        def save(self, s3):
            time.sleep(0.02)  # every upload waits this long
            return {"objects": 90_000, "messages": 0}

    changes, stop = Changes(durable=True), threading.Event()
    app = changes.wrap(lambda environ, start_response: [b""])
    args = (Slow(), None, stop, 60.0, changes)
    saver = threading.Thread(target=persist.save_durably, args=args, daemon=True)
    with caplog.at_level(logging.WARNING, logger="partcheck.stack.persist"):
        saver.start()
        for _ in range(4):
            app({"REQUEST_METHOD": "PUT"}, None)  # answered only after a snapshot
        stop.set()
        saver.join(timeout=5)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # not once per snapshot
    assert "snapshot of 90000 objects took" in warnings[0]
    assert "deploy/README.md" in warnings[0]


def test_an_object_caught_before_its_metadata_is_saved_with_it_later(moto, tmp_path, monkeypatch):
    from moto.s3.models import s3_backends

    from partcheck.stack import persist

    s3, _ = _clients(moto, "eu-west-1")
    s3.create_bucket(Bucket="half-made", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    backend = s3_backends[persist.ACCOUNT]["global"]
    # A copy creates its key, then sets its metadata: a snapshot can run in between.
    key = backend.put_object("half-made", "okay/a.jpg", b"photo")
    snapshots = Snapshotter(tmp_path, "eu-west-1")
    snapshots.save(s3)
    key.set_metadata({"x-amz-meta-model-label": "ok"})
    # However long until the next snapshot (a slow interval, failing saves), it looks again once.
    monkeypatch.setattr(persist, "SETTLED_S", 0.0)
    snapshots.save(s3)
    snapshots.save(s3)
    (bucket,) = [b for b in json.loads((tmp_path / "manifest.json").read_text())["buckets"] if b["objects"]]
    assert bucket["objects"][0]["metadata"] == {"model-label": "ok"}
