"""Settings pieces shared by the services; each service owns one settings class built at its entry point."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from partcheck.aws import AwsConfig

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
