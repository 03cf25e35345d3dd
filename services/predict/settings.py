"""Settings of the predict service (environment prefix PARTCHECK_PREDICT_), read once at the entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from partcheck.settings import DEFAULT_PREDICTIONS_QUEUE, DEFAULT_UPLOADS_QUEUE, WorkerSettings

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "partcheck-defect.onnx"


class PredictSettings(WorkerSettings):
    """Where predict reads images and sends predictions, and which model it uses."""

    model_config = SettingsConfigDict(env_prefix="PARTCHECK_PREDICT_", extra="ignore")

    backend: Literal["onnx", "rekognition"] = Field(default="onnx", description="classifier backend")
    model_path: Path = Field(default=DEFAULT_MODEL, description="ONNX model; its card sits beside it")
    rekognition_project_version_arn: str | None = Field(default=None, description="Rekognition backend model")
    max_image_bytes: int = Field(default=20 * 1024 * 1024, gt=0, description="larger objects are rejected")
    uploads_queue: str = Field(default=DEFAULT_UPLOADS_QUEUE, description="queue fed by S3 notifications")
    predictions_queue: str = Field(default=DEFAULT_PREDICTIONS_QUEUE, description="queue predictions go to")
