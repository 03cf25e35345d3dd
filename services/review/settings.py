"""Settings of the review service (environment prefix PARTCHECK_REVIEW_), read once at the entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from partcheck.settings import DEFAULT_PREDICTION_BUCKET, AwsSettings

DEFAULT_STATIC_DIR = Path(__file__).resolve().parents[2] / "frontend" / "dist"
DEFAULT_USERS_FILE = Path(".partcheck") / "users.json"
ALB_KEY_URL = "https://public-keys.auth.elb.{region}.amazonaws.com/{kid}"


class ReviewSettings(AwsSettings):
    """Where the review service listens, which bucket it reviews and how it authenticates inspectors."""

    model_config = SettingsConfigDict(env_prefix="PARTCHECK_REVIEW_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="address uvicorn binds")
    port: int = Field(default=8000, ge=1, le=65535, description="port uvicorn binds")
    prediction_bucket: str = Field(default=DEFAULT_PREDICTION_BUCKET, description="bucket with unclear/ etc.")
    audit_bucket: str | None = Field(
        default=None, description="bucket for audit/ records; unset = prediction"
    )
    static_dir: Path = Field(default=DEFAULT_STATIC_DIR, description="built inspector page (Vite output)")
    users_file: Path = Field(default=DEFAULT_USERS_FILE, description="user store (JSON, argon2 hashes)")
    session_secret: SecretStr | None = Field(
        default=None, description="HMAC key for session cookies; unset = random per process"
    )
    session_hours: float = Field(default=12.0, gt=0, le=24 * 7, description="session lifetime")
    cookie_secure: bool = Field(default=True, description="Secure flag on the session cookie")
    claim_seconds: int = Field(default=300, ge=5, le=3600, description="how long opening an item holds it")
    undo_seconds: int = Field(default=30, ge=1, le=3600, description="window to undo one's last decision")
    login_max_failures: int = Field(default=5, ge=1, description="failed logins per window before 429")
    login_window_seconds: int = Field(default=60, ge=1, description="rate-limit window for failed logins")
    trust_alb_oidc: bool = Field(default=False, description="accept the ALB's verified x-amzn-oidc-data")
    alb_arn: str | None = Field(default=None, description="expected `signer` of the ALB's OIDC token")
    alb_key_url: str = Field(default=ALB_KEY_URL, description="ALB public key URL template ({region}, {kid})")
    oidc_username_claim: str = Field(default="email", description="claim of the OIDC token used as name")
    queue_refresh_seconds: float = Field(default=5.0, ge=0, description="age at which the queue is re-listed")
    stats_cache_seconds: float = Field(default=10.0, ge=0, description="age at which stats are recomputed")
    stats_totals_seconds: float = Field(
        default=600.0,
        ge=0,
        description="age at which the stats' okay/defect/human_decided/rejected counts are re-listed",
    )
    history_days: int = Field(default=7, ge=1, le=366, description="days of audit log the history reads")
    max_image_bytes: int = Field(
        default=25 * 1024 * 1024,
        gt=0,
        description="largest image sent to the browser; decisions and undos copy inside S3, any size",
    )

    @model_validator(mode="after")
    def _oidc_needs_signer(self) -> Self:
        if self.trust_alb_oidc and not self.alb_arn:
            raise ValueError("PARTCHECK_REVIEW_ALB_ARN is required when PARTCHECK_REVIEW_TRUST_ALB_OIDC=true")
        return self

    @property
    def audit_bucket_name(self) -> str:
        """The bucket audit records go to."""
        return self.audit_bucket or self.prediction_bucket
