"""The prediction and the versioned message that carries it from predict to router."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from partcheck.errors import InvalidInput
from partcheck.thresholds import Thresholds, Verdict

SCHEMA_VERSION: Literal[1] = 1
Outcome = Literal["classified", "rejected"]


class Prediction(BaseModel):
    """What a classifier says about one image; `reason` explains an `unclear` verdict."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    label: Verdict
    confidence: float = Field(ge=0.0, le=1.0, description="confidence of the model's top label, 0-1")
    p_defect: float = Field(ge=0.0, le=1.0)
    model_name: str
    model_version: str
    thresholds: Thresholds
    reason: str | None = None
    ood_score: float | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)


class PredictionMessage(BaseModel):
    """Versioned SQS body from predict to router: where the image is and what became of it."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    schema_version: Literal[1] = SCHEMA_VERSION
    outcome: Outcome
    bucket: str
    key: str
    etag: str | None = None
    size: int | None = None
    content_type: str | None = None
    prediction: Prediction | None = None
    rejection_reason: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict, description="upload metadata: line, camera, ...")
    event_time: str | None = None
    predicted_at: str
    timings_ms: dict[str, float] = Field(default_factory=dict)

    def to_json(self) -> str:
        """Serialise for SQS."""
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def from_json(cls, body: str) -> PredictionMessage:
        """Parse an SQS body, raising InvalidInput for anything malformed."""
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, TypeError) as exc:
            raise InvalidInput(f"message body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidInput("message body is not a JSON object")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise InvalidInput(f"unsupported schema_version {data.get('schema_version')!r}")
        try:
            message = cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidInput(f"invalid prediction message: {exc.errors(include_url=False)}") from exc
        if message.outcome == "classified" and message.prediction is None:
            raise InvalidInput("classified message without a prediction")
        if message.outcome == "rejected" and not message.rejection_reason:
            raise InvalidInput("rejected message without a reason")
        return message
