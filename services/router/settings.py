"""Settings of the router service (environment prefix PARTCHECK_ROUTER_), read once at the entry point."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from partcheck.settings import DEFAULT_PREDICTION_BUCKET, DEFAULT_PREDICTIONS_QUEUE, WorkerSettings


class RouterSettings(WorkerSettings):
    """Where the router reads predictions and sorts images."""

    model_config = SettingsConfigDict(env_prefix="PARTCHECK_ROUTER_", extra="ignore")

    prediction_bucket: str = Field(
        default=DEFAULT_PREDICTION_BUCKET, description="bucket images are sorted into"
    )
    predictions_queue: str = Field(
        default=DEFAULT_PREDICTIONS_QUEUE, description="queue predictions arrive on"
    )
