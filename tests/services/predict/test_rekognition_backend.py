"""The Rekognition Custom Labels backend against a moto server over HTTP.

moto answers detect_custom_labels with a fixed label; the tests replace that answer inside the in-process
server (the request still travels over HTTP through botocore), to cover the original labels, unknown
labels and an empty result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from partcheck.aws import AwsConfig, client
from partcheck.consumer import DeadLetters, queue_url_from_arn
from partcheck.errors import InvalidImage, InvalidInput, ModelError, StorageUnavailable
from partcheck.messages import Prediction
from partcheck.stack.bootstrap import DLQ_SUFFIX, bootstrap
from partcheck.stack.config import StackSettings
from partcheck.storage import ObjectStore, Queue
from partcheck.thresholds import Thresholds
from services.predict.backends import load_classifier
from services.predict.handler import Runtime, handle
from services.predict.rekognition_backend import RekognitionClassifier
from services.predict.settings import PredictSettings
from tests.images import solid, truncated

pytestmark = pytest.mark.integration

ARN = "arn:aws:rekognition:eu-west-1:123456789012:project/casting/version/casting.2024-01-01/1700000000000"


@pytest.fixture
def answer(monkeypatch: pytest.MonkeyPatch, moto: str) -> list[dict[str, Any]]:
    """The CustomLabels moto will return; tests fill it in."""
    from moto.rekognition.models import RekognitionBackend

    labels: list[dict[str, Any]] = []
    monkeypatch.setattr(RekognitionBackend, "_detect_custom_labels_detections", lambda self: list(labels))
    return labels


@pytest.fixture
def classifier(moto: str) -> RekognitionClassifier:
    rek = client("rekognition", AwsConfig(endpoint_url=moto))
    clf = load_classifier(PredictSettings(backend="rekognition", rekognition_project_version_arn=ARN), rek)
    assert isinstance(clf, RekognitionClassifier)
    return clf


def test_moto_default_label_is_unknown_and_unclear(
    classifier: RekognitionClassifier, sample_images: dict[str, list[Path]]
) -> None:
    (p,) = classifier.predict([sample_images["ok"][0].read_bytes()])
    assert p.label == "unclear"
    assert "unknown labels only" in (p.reason or "")
    assert "MyLogo" in (p.reason or "")


def test_def_front_maps_to_defect_on_a_0_1_scale(
    answer: list[dict[str, Any]], classifier: RekognitionClassifier, sample_images: dict[str, list[Path]]
) -> None:
    answer[:] = [{"Name": "def_front", "Confidence": 97.5}, {"Name": "ok_front", "Confidence": 2.5}]
    (p,) = classifier.predict([sample_images["defect"][0].read_bytes()])
    assert p.label == "defect"
    assert p.p_defect == pytest.approx(0.975)
    assert p.confidence == pytest.approx(0.975)
    assert p.model_name == "rekognition-custom-labels"
    assert p.model_version == "casting.2024-01-01"


def test_ok_front_alone(
    answer: list[dict[str, Any]], classifier: RekognitionClassifier, sample_images: dict[str, list[Path]]
) -> None:
    answer[:] = [{"Name": "ok_front", "Confidence": 91.0}]
    (p,) = classifier.predict([sample_images["ok"][0].read_bytes()])
    assert p.label == "ok"
    assert p.p_defect == pytest.approx(0.09)


def test_low_confidence_is_unclear_with_the_original_threshold(
    answer: list[dict[str, Any]], classifier: RekognitionClassifier, sample_images: dict[str, list[Path]]
) -> None:
    # 75 on Rekognition's scale is 0.75 < 0.8: the original compared 75 > 0.8 and never said unclear.
    answer[:] = [{"Name": "def_front", "Confidence": 75.0}, {"Name": "ok_front", "Confidence": 25.0}]
    assert classifier.thresholds == Thresholds.single(0.8)
    (p,) = classifier.predict([sample_images["defect"][0].read_bytes()])
    assert p.label == "unclear"
    assert "below threshold" in (p.reason or "")


def test_empty_result_is_unclear(
    answer: list[dict[str, Any]], classifier: RekognitionClassifier, sample_images: dict[str, list[Path]]
) -> None:
    answer[:] = []
    (p,) = classifier.predict([sample_images["ok"][0].read_bytes()])
    assert p.label == "unclear"
    assert "no label returned" in (p.reason or "")


def test_bad_bytes_never_reach_rekognition(
    answer: list[dict[str, Any]], classifier: RekognitionClassifier, sample_images: dict[str, list[Path]]
) -> None:
    answer[:] = [{"Name": "ok_front", "Confidence": 99.0}]
    good = sample_images["ok"][0].read_bytes()
    out = classifier.predict_many([b"", truncated(good), good, solid(255)])
    assert isinstance(out[0], InvalidImage)
    assert isinstance(out[1], InvalidImage)
    assert not isinstance(out[2], InvalidImage)
    assert out[2].label == "ok"
    assert not isinstance(out[3], InvalidImage)
    assert out[3].label == "unclear"
    assert "over-exposed" in (out[3].reason or "")
    with pytest.raises(InvalidImage):
        classifier.predict([b""])


@pytest.fixture
def refusing(monkeypatch: pytest.MonkeyPatch, moto: str) -> None:
    """moto answers detect_custom_labels as Rekognition does for a bad parameter (not about the image)."""
    from moto.core.exceptions import JsonRESTError
    from moto.rekognition.models import RekognitionBackend

    def refuse(self: object) -> list[dict[str, Any]]:
        raise JsonRESTError("InvalidParameterException", "Request has invalid parameters")

    monkeypatch.setattr(RekognitionBackend, "_detect_custom_labels_detections", refuse)


def test_a_refused_request_is_a_retryable_model_error(
    refusing: None, classifier: RekognitionClassifier, sample_images: dict[str, list[Path]]
) -> None:
    photo = sample_images["ok"][0].read_bytes()
    (result,) = classifier.predict_many([photo])
    assert isinstance(result, ModelError)
    assert "InvalidParameterException" in str(result)
    assert not isinstance(result, InvalidInput)
    with pytest.raises(ModelError, match="InvalidParameterException"):
        classifier.predict([photo])


@pytest.fixture
def throttled_after_one(monkeypatch: pytest.MonkeyPatch, moto: str) -> None:
    """moto answers the first detect_custom_labels and throttles every call after it."""
    from moto.core.exceptions import JsonRESTError
    from moto.rekognition.models import RekognitionBackend

    calls = []

    def answer(self: object) -> list[dict[str, Any]]:
        calls.append(1)
        if len(calls) > 1:
            raise JsonRESTError("ThrottlingException", "Rate exceeded")
        return [{"Name": "ok_front", "Confidence": 99.0}]

    monkeypatch.setattr(RekognitionBackend, "_detect_custom_labels_detections", answer)


def test_throttling_mid_batch_keeps_the_verdicts_already_paid_for(
    throttled_after_one: None, moto: str, sample_images: dict[str, list[Path]]
) -> None:
    rek = client("rekognition", AwsConfig(endpoint_url=moto, max_attempts=2))
    sent: list[object] = []

    def record(params: dict[str, Any], **_: object) -> None:
        sent.append(params["body"])

    # before-call fires once per API call, whatever botocore's retries do: the images actually sent.
    rek.meta.events.register("before-call.rekognition.DetectCustomLabels", record)
    clf = RekognitionClassifier(rek, ARN, Thresholds(t_ok=0.8, t_defect=0.8))
    photos = [p.read_bytes() for p in sample_images["ok"][:3]]

    out = clf.predict_many(photos)

    assert isinstance(out[0], Prediction)
    assert out[0].label == "ok"
    assert [type(r) for r in out[1:]] == [StorageUnavailable, StorageUnavailable]
    assert "ThrottlingException" in str(out[1])
    # The third photo is not sent into a throttle; before, the error left the first verdict unused too.
    assert len(sent) == 2


def _three_uploads(moto: str, sample_images: dict[str, list[Path]]) -> tuple[Any, Runtime, list[Any]]:
    """The stack's queues, a Rekognition runtime and an SQS batch of three upload events."""
    settings = StackSettings(endpoint_url=moto)
    s3, sqs = client("s3", settings.aws()), client("sqs", settings.aws())
    resources = bootstrap(s3, sqs, settings)
    s3.put_bucket_notification_configuration(Bucket=settings.inbound_bucket, NotificationConfiguration={})
    store = ObjectStore(s3)
    rek = client("rekognition", AwsConfig(endpoint_url=moto, max_attempts=1))  # no backoff in tests
    runtime = Runtime(
        store,
        Queue(sqs, resources.queue_urls[settings.predictions_queue]),
        load_classifier(PredictSettings(backend="rekognition", rekognition_project_version_arn=ARN), rek),
        DeadLetters(sqs),
        queue_url_from_arn(sqs),
        10_000_000,
    )
    uploads_arn = f"arn:aws:sqs:eu-west-1:123456789012:{settings.uploads_queue}"
    records = []
    for n, path in enumerate(sample_images["ok"][:3]):
        key = f"line-1/{path.name}"
        store.put(settings.inbound_bucket, key, path.read_bytes())
        s3_event = {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": settings.inbound_bucket}, "object": {"key": key}},
                }
            ]
        }
        records.append(
            {
                "messageId": f"m{n}",
                "body": json.dumps(s3_event),
                "eventSource": "aws:sqs",
                "eventSourceARN": uploads_arn,
            }
        )
    return (sqs, resources, settings), runtime, records


def test_a_refused_request_leaves_the_whole_sqs_batch_for_retry_instead_of_the_dlq(
    refusing: None, moto: str, sample_images: dict[str, list[Path]]
) -> None:
    (sqs, resources, settings), runtime, records = _three_uploads(moto, sample_images)

    result = handle({"Records": records}, runtime)

    # On the old code every message went straight to the DLQ as poison on its first delivery.
    assert result == {"batchItemFailures": [{"itemIdentifier": f"m{n}"} for n in range(3)]}
    dlq = resources.queue_urls[settings.uploads_queue + DLQ_SUFFIX]
    assert "Messages" not in sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=0)


def test_throttling_mid_batch_retries_only_the_messages_not_classified(
    throttled_after_one: None, moto: str, sample_images: dict[str, list[Path]]
) -> None:
    (sqs, resources, settings), runtime, records = _three_uploads(moto, sample_images)

    result = handle({"Records": records}, runtime)

    # Before, the first image's paid-for verdict was dropped and all three messages went back.
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]}
    got = sqs.receive_message(
        QueueUrl=resources.queue_urls[settings.predictions_queue], MaxNumberOfMessages=10
    )
    bodies = [json.loads(m["Body"]) for m in got.get("Messages", [])]
    assert [(b["key"], b["prediction"]["label"]) for b in bodies] == [
        (f"line-1/{sample_images['ok'][0].name}", "ok")
    ]


def test_checks_that_cannot_run_send_the_image_to_an_inspector(
    answer: list[dict[str, Any]],
    classifier: RekognitionClassifier,
    sample_images: dict[str, list[Path]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.predict import rekognition_backend

    answer[:] = [{"Name": "ok_front", "Confidence": 99.0}]

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("min_std")  # say, a limits section the code does not expect

    monkeypatch.setattr(rekognition_backend.quality, "check", broken)
    (p,) = classifier.predict_many([sample_images["ok"][0].read_bytes()])
    assert not isinstance(p, InvalidImage)
    assert (p.label, p.reason) == ("unclear", "checks could not run: KeyError: 'min_std'")
