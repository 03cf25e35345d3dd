"""The original system's classifier: Amazon Rekognition Custom Labels, behind the same `Classifier` protocol.

`detect_custom_labels(ProjectVersionArn=..., MinConfidence=0)` so every label comes back with its score;
the original labels map `def_front` -> defect and `ok_front` -> ok; Confidence is converted from
Rekognition's 0-100 to 0-1 (the original compared 0-100 to a 0-1 threshold, so `unclear` almost never
fired). An empty answer or only unknown labels give `unclear` with the reason.

Images are decoded locally first: corrupt bytes raise InvalidImage without a paid API call, and the same
quality checks as the ONNX backend keep blank or badly exposed frames from getting a verdict. Formats
Rekognition does not take (BMP, TIFF) are re-encoded as PNG. `predict_many` returns one
`Prediction`, `InvalidImage` or retryable error per image; `predict` raises as the ONNX backend does.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from partcheck.aws import aws_errors
from partcheck.errors import InvalidImage, InvalidInput, ModelError, PartcheckError
from partcheck.messages import Prediction
from partcheck.thresholds import Thresholds
from services.predict import quality
from services.predict.core import BELOW_BAND, all_or_raise
from services.predict.preprocess import decode, to_array

if TYPE_CHECKING:
    from mypy_boto3_rekognition import RekognitionClient

LABELS = {"def_front": "defect", "ok_front": "ok"}
# Rekognition's limit for image bytes sent inline.
MAX_BYTES = 5 * 1024 * 1024
QUALITY_SIZE = 128
log = logging.getLogger(__name__)


class RekognitionClassifier:
    """Rekognition Custom Labels model version, called once per image."""

    name = "rekognition-custom-labels"

    def __init__(self, client: RekognitionClient, project_version_arn: str, thresholds: Thresholds) -> None:
        self._client = client
        self._arn = project_version_arn
        self.thresholds = thresholds
        # The ARN's last path element is the version name, e.g. .../version/partcheck.2024-01-01/123.
        parts = project_version_arn.split("/")
        self.version = parts[-2] if len(parts) >= 2 else project_version_arn
        self._limits = quality.QualityLimits()

    def predict(self, images: Sequence[bytes]) -> list[Prediction]:
        """Classify a batch; raises InvalidImage if any member cannot be decoded."""
        return all_or_raise(self.predict_many(images))

    def predict_many(self, images: Sequence[bytes]) -> list[Prediction | PartcheckError]:
        """One Prediction, InvalidImage or retryable error per image, in order.

        A refused request that is not about the image (bad ARN, parameters) is a ModelError, throttling or
        an outage StorageUnavailable: that image and the ones after it are not sent now and come back
        as that error, to be retried. The images already classified keep their verdicts: each call is
        billed, and raising would have the whole batch classified, and paid for, again.
        """
        out: list[Prediction | PartcheckError] = []
        for n, data in enumerate(images):
            try:
                out.append(self._one(data))
            except InvalidImage as exc:
                out.append(exc)
            except PartcheckError as exc:
                out.extend([exc] * (len(images) - n))
                break
        return out

    def _one(self, data: bytes) -> Prediction:
        t0 = time.perf_counter()
        payload = data
        try:
            decoded = decode(data, QUALITY_SIZE)
        except (InvalidImage, MemoryError):
            raise
        except Exception as exc:
            # Decoding depends on these bytes alone: its failure is this image's, never the batch's.
            log.exception("image could not be decoded")
            raise InvalidImage(f"image could not be decoded: {type(exc).__name__}: {exc}") from exc
        try:
            reason = quality.check(to_array(decoded.image, QUALITY_SIZE), self._limits)
            if reason is None and decoded.format not in ("JPEG", "PNG"):
                payload = _as_png(decoded.image)
        except MemoryError:
            raise
        except Exception as exc:
            # A decoded image the checks cannot handle points at this service, not at the photo: an
            # inspector sees it in unclear/ instead of it vanishing into rejected/.
            log.exception("the checks failed on an image")
            reason = f"checks could not run: {type(exc).__name__}: {exc}"
        t1 = time.perf_counter()
        timings = {"preprocess": (t1 - t0) * 1000}
        if reason is not None:
            return self._prediction("unclear", 0.5, 0.5, timings, reason)
        if len(payload) > MAX_BYTES:
            raise InvalidImage(f"image of {len(payload)} bytes is over Rekognition's {MAX_BYTES}-byte limit")
        try:
            with aws_errors("rekognition detect_custom_labels"):
                response = self._client.detect_custom_labels(
                    ProjectVersionArn=self._arn, Image={"Bytes": payload}, MinConfidence=0
                )
        except InvalidInput as exc:
            if "Image" in str(exc):
                raise InvalidImage(str(exc)) from exc
            # About the request (ARN, parameters), so every image would get it: a deployment to fix and
            # retry, never a poison message.
            raise ModelError(f"Rekognition refused the request, not the image: {exc}") from exc
        timings["inference"] = (time.perf_counter() - t1) * 1000
        scores: dict[str, float] = {}
        unknown: list[str] = []
        for item in response.get("CustomLabels", []):
            name, conf = item.get("Name", ""), float(item.get("Confidence", 0.0)) / 100.0
            if name in LABELS:
                scores[LABELS[name]] = max(scores.get(LABELS[name], 0.0), min(max(conf, 0.0), 1.0))
            else:
                unknown.append(name)
        if not scores:
            why = f"unknown labels only: {sorted(set(unknown))}" if unknown else "no label returned"
            return self._prediction("unclear", 0.5, 0.5, timings, f"Rekognition: {why}")
        if "defect" in scores and "ok" in scores and scores["defect"] + scores["ok"] > 0:
            p_defect = scores["defect"] / (scores["defect"] + scores["ok"])
        elif "defect" in scores:
            p_defect = scores["defect"]
        else:
            p_defect = 1.0 - scores["ok"]
        label = self.thresholds.decide(p_defect)
        confidence = max(p_defect, 1.0 - p_defect)
        reason = None
        if label == "unclear":
            reason = f"{BELOW_BAND}: confidence {confidence:.3f} under the band {self.thresholds}"
        return self._prediction(label, confidence, p_defect, timings, reason)

    def _prediction(
        self,
        label: str,
        confidence: float,
        p_defect: float,
        timings: dict[str, float],
        reason: str | None,
    ) -> Prediction:
        return Prediction.model_validate(
            {
                "label": label,
                "confidence": confidence,
                "p_defect": p_defect,
                "model_name": self.name,
                "model_version": self.version,
                "thresholds": self.thresholds,
                "reason": reason,
                "timings_ms": {k: round(v, 3) for k, v in timings.items()},
            }
        )


def _as_png(image: object) -> bytes:
    from PIL import Image

    assert isinstance(image, Image.Image)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
