"""Settings of the router service (environment prefix PARTCHECK_ROUTER_), read once at the entry point."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from partcheck.settings import DEFAULT_PREDICTION_BUCKET, DEFAULT_PREDICTIONS_QUEUE, ThresholdSettings


class RouterSettings(ThresholdSettings):
    """Where the router reads predictions and sorts images."""

    model_config = SettingsConfigDict(env_prefix="PARTCHECK_ROUTER_", extra="ignore")

    prediction_bucket: str = Field(
        default=DEFAULT_PREDICTION_BUCKET, description="bucket images are sorted into"
    )
    predictions_queue: str = Field(
        default=DEFAULT_PREDICTIONS_QUEUE, description="queue predictions arrive on"
    )
    batch_size: int = Field(default=10, ge=1, le=10, description="messages per long poll (worker)")
    wait_seconds: int = Field(default=20, ge=0, le=20, description="long-poll wait (worker)")
    visibility_timeout: int = Field(default=60, ge=1, description="seconds a received message stays hidden")
    concurrency: int = Field(default=8, ge=1, le=64, description="parallel long-poll consumers (worker)")
