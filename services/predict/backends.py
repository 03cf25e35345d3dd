"""`load_classifier`: the one place the predict worker, the Lambda handler and the CLI build their model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from partcheck.errors import ModelError
from services.predict.core import Classifier
from services.predict.settings import PredictSettings

if TYPE_CHECKING:
    from mypy_boto3_rekognition import RekognitionClient


def load_classifier(settings: PredictSettings, rekognition: RekognitionClient | None = None) -> Classifier:
    """Build the configured backend once per process; ModelError says what is missing or mismatched."""
    override = settings.thresholds()
    if settings.backend == "onnx":
        from services.predict.onnx_backend import OnnxClassifier

        return OnnxClassifier(settings.model_path, thresholds=override)
    if settings.backend == "rekognition":
        from partcheck.thresholds import ORIGINAL_THRESHOLD, Thresholds
        from services.predict.rekognition_backend import RekognitionClassifier

        if not settings.rekognition_project_version_arn:
            raise ModelError("backend 'rekognition' needs PARTCHECK_PREDICT_REKOGNITION_PROJECT_VERSION_ARN")
        if rekognition is None:
            raise ModelError("backend 'rekognition' needs a Rekognition client built at the entry point")
        return RekognitionClassifier(
            rekognition,
            settings.rekognition_project_version_arn,
            thresholds=override or Thresholds.single(ORIGINAL_THRESHOLD),
        )
    raise ModelError(f"unknown backend {settings.backend!r}; expected 'onnx' or 'rekognition'")
