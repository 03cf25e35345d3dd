"""Settings pieces shared by the services; each service owns one settings class built at its entry point."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from partcheck.aws import AwsConfig
from partcheck.consumer import Polling
from partcheck.thresholds import Thresholds

DEFAULT_INBOUND_BUCKET = "partcheck-inbound"
DEFAULT_PREDICTION_BUCKET = "partcheck-predictions"
DEFAULT_PREDICTIONS_QUEUE = "partcheck-predictions"
DEFAULT_UPLOADS_QUEUE = "partcheck-uploads"


class AwsSettings(BaseSettings):
    """AWS location fields every service settings class inherits."""

    model_config = SettingsConfigDict(extra="ignore", env_file=None)

    endpoint_url: str | None = Field(
        default=None, description="S3/SQS endpoint; unset means real AWS, set for the local moto server"
    )
    region: str = Field(default="eu-west-1", description="AWS region")

    def aws(self) -> AwsConfig:
        """The AWS location as a plain value to build clients from."""
        return AwsConfig(endpoint_url=self.endpoint_url, region=self.region)


class ThresholdSettings(AwsSettings):
    """Optional threshold overrides; unset means the model card's (predict) or the message's (router)."""

    threshold: float | None = Field(
        default=None, ge=0.5, le=1.0, description="single threshold, the original's design (e.g. 0.8)"
    )
    t_ok: float | None = Field(default=None, ge=0.5, le=1.0, description="band: minimum p_ok for `ok`")
    t_defect: float | None = Field(
        default=None, ge=0.5, le=1.0, description="band: minimum p_defect for `defect`"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if self.threshold is not None and (self.t_ok is not None or self.t_defect is not None):
            raise ValueError("set either threshold or t_ok/t_defect, not both")
        if (self.t_ok is None) != (self.t_defect is None):
            raise ValueError("t_ok and t_defect go together")
        return self

    def thresholds(self) -> Thresholds | None:
        """The configured override, or None when none is set."""
        if self.threshold is not None:
            return Thresholds.single(self.threshold)
        if self.t_ok is not None and self.t_defect is not None:
            return Thresholds(t_ok=self.t_ok, t_defect=self.t_defect)
        return None


class WorkerSettings(ThresholdSettings):
    """How a local SQS worker polls; Lambda's event source mapping does this job on AWS."""

    batch_size: int = Field(default=10, ge=1, le=10, description="messages per long poll (worker)")
    wait_seconds: int = Field(default=20, ge=0, le=20, description="long-poll wait (worker)")
    visibility_timeout: int = Field(default=60, ge=1, description="seconds a received message stays hidden")
    concurrency: int = Field(default=8, ge=1, le=64, description="parallel long-poll consumers (worker)")

    def polling(self) -> Polling:
        """The polling parameters as a plain value for `run_worker`."""
        return Polling(self.batch_size, self.wait_seconds, self.visibility_timeout, self.concurrency)
