"""Predict adapter: S3 event parsing (JSON event files) and classification of objects in moto."""

import json

import pytest

from partcheck.aws import AwsConfig, client
from partcheck.errors import InvalidInput, ModelError, StorageUnavailable
from partcheck.messages import PredictionMessage
from partcheck.storage import ObjectStore, Queue
from services.predict.service import (
    handle_s3_event,
    parse_s3_event,
    predict_bodies,
    predict_events,
    predict_upload,
)
from services.predict.settings import DEFAULT_MODEL
from tests.conftest import EVENTS
from tests.fakes import FakeClassifier
from tests.images import png_bomb, truncated
from tests.services.predict.odd_images import absurd_strip_offset_tiff, cielab_tiff


def _event(name):
    return json.loads((EVENTS / name).read_text())


@pytest.mark.unit
def test_parse_s3_event_decodes_keys_and_sets_aside_other_events():
    uploads, others = parse_s3_event(_event("s3_put.json"))
    assert [u.key for u in uploads] == ["line-3/cam-1/2026-11-25/img_0001.jpg", "line 3/Käfer #1.jpg"]
    assert uploads[0].etag == "0123456789abcdef0123456789abcdef"
    assert len(others) == 1
    assert "ObjectRemoved:Delete" in others[0]


@pytest.mark.unit
def test_s3_test_event_has_no_uploads():
    assert parse_s3_event(_event("s3_test_event.json")) == ([], [])


@pytest.mark.unit
@pytest.mark.parametrize(
    "event", [[], "x", {"Records": "no"}, {"Records": [{"eventName": "ObjectCreated:Put"}]}]
)
def test_malformed_events_are_invalid_input(event):
    with pytest.raises(InvalidInput):
        parse_s3_event(event)


@pytest.fixture
def env(moto, sample_images):
    aws = AwsConfig(endpoint_url=moto)
    s3, sqs = client("s3", aws), client("sqs", aws)
    s3.create_bucket(Bucket="pc-in", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    queue = Queue(sqs, sqs.create_queue(QueueName="pc-predictions")["QueueUrl"])
    fake = FakeClassifier()
    defect = sample_images["defect"][0].read_bytes()
    fake.learn(defect, 0.99)
    return ObjectStore(s3), queue, fake, defect


def _put_event(store, key, body, metadata=None):
    store.put("pc-in", key, body, metadata=metadata or {})
    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "eventTime": "2026-11-25T08:00:00Z",
                "s3": {
                    "bucket": {"name": "pc-in"},
                    "object": {"key": key.replace(" ", "+"), "size": len(body)},
                },
            }
        ]
    }


def _sent(queue):
    return [PredictionMessage.from_json(m.body) for m in queue.receive(10, 1)]


@pytest.mark.integration
def test_classifies_and_forwards_upload_metadata(env):
    store, queue, fake, defect = env
    event = _put_event(store, "line 3/cam 1/a b.jpeg", defect, {"line": "3", "camera": "1", "other": "x"})
    assert handle_s3_event(event, store, fake, queue, 10_000_000) == 1
    [msg] = _sent(queue)
    assert msg.outcome == "classified"
    assert msg.key == "line 3/cam 1/a b.jpeg"
    assert msg.prediction.label == "defect"
    assert msg.prediction.p_defect == pytest.approx(0.99)
    assert msg.metadata == {"line": "3", "camera": "1"}
    assert msg.etag
    assert msg.size == len(defect)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty object"),
        (b"this is not an image", "not a usable image"),
        (png_bomb(), "not a usable image"),
    ],
)
def test_bad_images_become_rejected_messages(env, body, reason):
    store, queue, fake, _ = env
    handle_s3_event(_put_event(store, "bad.bin", body), store, fake, queue, 10_000_000)
    [msg] = _sent(queue)
    assert msg.outcome == "rejected"
    assert reason in msg.rejection_reason


@pytest.mark.integration
def test_truncated_jpeg_is_rejected(env):
    store, queue, fake, defect = env
    handle_s3_event(_put_event(store, "cut.jpg", truncated(defect)), store, fake, queue, 10_000_000)
    [msg] = _sent(queue)
    assert msg.outcome == "rejected"


@pytest.mark.integration
def test_object_over_the_size_limit_is_rejected_without_download(env):
    store, queue, fake, defect = env
    handle_s3_event(_put_event(store, "big.jpg", defect), store, fake, queue, max_image_bytes=1000)
    [msg] = _sent(queue)
    assert msg.outcome == "rejected"
    assert "over the limit" in msg.rejection_reason
    assert fake.calls == 0


@pytest.mark.integration
def test_object_already_gone_sends_nothing(env):
    store, queue, fake, defect = env
    event = _put_event(store, "gone.jpg", defect)
    store.delete("pc-in", "gone.jpg")
    assert predict_upload(parse_s3_event(event)[0][0], store, fake, 10_000_000) is None
    assert handle_s3_event(event, store, fake, queue, 10_000_000) == 0


@pytest.mark.integration
def test_unknown_event_type_is_invalid_after_handling_the_uploads(env):
    store, queue, fake, defect = env
    event = _put_event(store, "ok.jpg", defect)
    event["Records"].append(
        {
            "eventSource": "aws:s3",
            "eventName": "ObjectRestore:Completed",
            "s3": {"bucket": {"name": "pc-in"}, "object": {"key": "x.jpg"}},
        }
    )
    with pytest.raises(InvalidInput, match="ObjectRestore"):
        handle_s3_event(event, store, fake, queue, 10_000_000)
    assert len(_sent(queue)) == 1


class _FlakyQueue:
    """Sends through a real queue but reports the bodies matching `fail_if` as not sent."""

    def __init__(self, queue, fail_if):
        self.queue, self.fail_if = queue, fail_if

    def send_batch(self, bodies):
        failed = {i: "ServiceUnavailable" for i, b in enumerate(bodies) if self.fail_if(b)}
        self.queue.send_batch([b for i, b in enumerate(bodies) if i not in failed])
        return failed


@pytest.mark.integration
def test_a_batch_of_events_is_one_model_call_and_each_event_has_its_own_outcome(env, sample_images):
    store, queue, fake, defect = env
    ok = sample_images["ok"][0].read_bytes()
    fake.learn(ok, 0.01)
    seen = []
    predict_many = fake.predict_many
    fake.predict_many = lambda images: seen.append(len(images)) or predict_many(images)
    events = [_put_event(store, f"batch/{i:02d}.jpeg", ok if i % 2 else defect) for i in range(12)]
    events.insert(3, {"Records": "not a list"})
    events.append(_put_event(store, "batch/broken.jpeg", truncated(defect)))

    outcomes, sent = predict_events(events, store, fake, queue, 10_000_000)

    assert seen == [13]  # twelve images plus the truncated one, one model call
    assert sent == 13
    assert [type(o).__name__ if o else None for o in outcomes] == [None] * 3 + ["InvalidInput"] + [None] * 10
    messages = {m.key: m for m in _sent(queue) + _sent(queue)}
    assert len(messages) == 13
    assert messages["batch/01.jpeg"].prediction.label == "ok"
    assert messages["batch/02.jpeg"].prediction.label == "defect"
    assert messages["batch/broken.jpeg"].outcome == "rejected"


@pytest.mark.integration
def test_an_event_whose_prediction_was_not_sent_is_retried_alone(env):
    store, queue, fake, defect = env
    events = [_put_event(store, name, defect) for name in ("a.jpeg", "b.jpeg", "c.jpeg")]
    flaky = _FlakyQueue(queue, lambda body: '"b.jpeg"' in body)

    outcomes, sent = predict_events(events, store, fake, flaky, 10_000_000)

    assert sent == 2
    assert outcomes[0] is None
    assert outcomes[2] is None
    assert isinstance(outcomes[1], StorageUnavailable)
    assert sorted(m.key for m in _sent(queue)) == ["a.jpeg", "c.jpeg"]


@pytest.mark.integration
def test_bodies_that_are_not_json_fail_alone(env):
    store, queue, fake, defect = env
    good = json.dumps(_put_event(store, "good.jpeg", defect))
    outcomes = predict_bodies(["{not json", good], store, fake, queue, 10_000_000)
    assert isinstance(outcomes[0], InvalidInput)
    assert "not JSON" in str(outcomes[0])
    assert outcomes[1] is None
    assert [m.key for m in _sent(queue)] == ["good.jpeg"]


@pytest.fixture(scope="module")
def real_model():
    if not DEFAULT_MODEL.is_file():
        pytest.skip("the shipped model is not in models/ yet")
    from services.predict.onnx_backend import OnnxClassifier

    return OnnxClassifier(DEFAULT_MODEL)


@pytest.mark.integration
def test_a_cielab_tiff_is_rejected_alone_in_a_batch_through_the_real_model(env, sample_images, real_model):
    store, queue, _, defect = env
    ok = sample_images["ok"][0].read_bytes()
    bodies = [
        json.dumps(_put_event(store, "a.jpeg", ok)),
        json.dumps(_put_event(store, "lab.tif", cielab_tiff())),
        json.dumps(_put_event(store, "b.jpeg", defect)),
    ]

    outcomes = predict_bodies(bodies, store, real_model, queue, 10_000_000)

    assert outcomes == [None, None, None]
    messages = {m.key: m for m in _sent(queue)}
    assert sorted(messages) == ["a.jpeg", "b.jpeg", "lab.tif"]
    assert messages["a.jpeg"].outcome == messages["b.jpeg"].outcome == "classified"
    assert messages["lab.tif"].outcome == "rejected"
    assert "unsupported colour mode 'LAB'" in messages["lab.tif"].rejection_reason


@pytest.mark.integration
def test_a_tiff_that_overflows_the_decoder_is_rejected_alone(env, real_model):
    store, queue, _, defect = env
    events = [_put_event(store, "odd.tif", absurd_strip_offset_tiff()), _put_event(store, "a.jpeg", defect)]

    outcomes, sent = predict_events(events, store, real_model, queue, 10_000_000)

    assert outcomes == [None, None]
    assert sent == 2
    messages = {m.key: m for m in _sent(queue)}
    assert messages["odd.tif"].outcome == "rejected"
    assert "corrupt or truncated" in messages["odd.tif"].rejection_reason
    assert messages["a.jpeg"].outcome == "classified"


def _malformed(event, field, value):
    record = event["Records"][0]
    if field == "eventTime":
        record["eventTime"] = value
    else:
        record["s3"]["object"][field] = value
    return event


@pytest.mark.integration
@pytest.mark.parametrize(
    ("field", "value"), [("size", "x"), ("size", "12"), ("eventTime", 1764000000), ("eTag", 7)]
)
def test_a_malformed_event_field_fails_only_its_own_message(env, field, value):
    store, queue, fake, defect = env
    bodies = [
        json.dumps(_put_event(store, "a.jpeg", defect)),
        json.dumps(_malformed(_put_event(store, "odd.jpeg", defect), field, value)),
        json.dumps(_put_event(store, "b.jpeg", defect)),
    ]

    outcomes = predict_bodies(bodies, store, fake, queue, 10_000_000)

    assert outcomes[0] is None
    assert outcomes[2] is None
    assert isinstance(outcomes[1], InvalidInput)
    assert field in str(outcomes[1])
    assert sorted(m.key for m in _sent(queue)) == ["a.jpeg", "b.jpeg"]


@pytest.mark.integration
@pytest.mark.parametrize("body", ["[" * 100_000, '{"Records": ' + "1" * 5000 + "}"])
def test_bodies_json_cannot_parse_fail_alone(env, body):
    store, queue, fake, defect = env
    good = json.dumps(_put_event(store, "good.jpeg", defect))
    outcomes = predict_bodies([body, good], store, fake, queue, 10_000_000)
    assert isinstance(outcomes[0], InvalidInput)
    assert outcomes[1] is None
    assert [m.key for m in _sent(queue)] == ["good.jpeg"]


class _RefusingClassifier(FakeClassifier):
    """A backend whose whole call fails, as Rekognition does for a request it refuses or an outage."""

    def __init__(self, error):
        super().__init__()
        self.error = error

    def predict_many(self, images):
        raise self.error


@pytest.mark.integration
@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (InvalidInput("InvalidParameterException Request has invalid parameters"), ModelError),
        (StorageUnavailable("ThrottlingException"), StorageUnavailable),
        (RuntimeError("onnxruntime fell over"), RuntimeError),
    ],
)
def test_a_classifier_failing_the_whole_call_is_retried_never_poison(env, error, expected):
    store, queue, _, defect = env
    events = [
        _put_event(store, "a.jpeg", defect),
        _put_event(store, "empty.jpeg", b""),  # rejected before the model: unaffected
        _put_event(store, "b.jpeg", defect),
    ]

    outcomes, sent = predict_events(events, store, _RefusingClassifier(error), queue, 10_000_000)

    assert outcomes[1] is None
    for outcome in (outcomes[0], outcomes[2]):
        assert isinstance(outcome, expected)
        assert not isinstance(outcome, InvalidInput)
    assert sent == 1
    assert [m.key for m in _sent(queue)] == ["empty.jpeg"]


class _PartlyRefusingClassifier(FakeClassifier):
    """A backend that classifies the first image and not the others, as Rekognition does when throttled."""

    def __init__(self, error):
        super().__init__()
        self.error = error

    def predict_many(self, images):
        return [*super().predict_many(images[:1]), *[self.error] * (len(images) - 1)]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (StorageUnavailable("ThrottlingException Rate exceeded"), StorageUnavailable),
        # About the call, not the image: retried like a refusal of the whole call, never dead-lettered.
        (InvalidInput("InvalidParameterException Request has invalid parameters"), ModelError),
    ],
)
def test_images_a_classifier_did_not_get_to_are_retried_alone(env, error, expected):
    store, queue, _, defect = env
    events = [_put_event(store, f"{name}.jpeg", defect) for name in ("a", "b", "c")]

    outcomes, sent = predict_events(events, store, _PartlyRefusingClassifier(error), queue, 10_000_000)

    assert outcomes[0] is None
    for outcome in outcomes[1:]:
        assert isinstance(outcome, expected)
        assert not isinstance(outcome, InvalidInput)
    assert sent == 1
    assert [m.key for m in _sent(queue)] == ["a.jpeg"]
