"""Settings of the local stack and of `partcheck bootstrap` (environment prefix PARTCHECK_)."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from partcheck.aws import AwsConfig
from partcheck.errors import InvalidInput
from partcheck.settings import (
    DEFAULT_INBOUND_BUCKET,
    DEFAULT_PREDICTION_BUCKET,
    DEFAULT_PREDICTIONS_QUEUE,
    DEFAULT_UPLOADS_QUEUE,
    AwsSettings,
)
from partcheck.stack import SnapshotMode


class StackSettings(AwsSettings):
    """Names of the stack's resources, where its state lives and which ports it uses."""

    model_config = SettingsConfigDict(env_prefix="PARTCHECK_", extra="ignore")

    inbound_bucket: str = Field(default=DEFAULT_INBOUND_BUCKET, description="raw uploads land here")
    prediction_bucket: str = Field(default=DEFAULT_PREDICTION_BUCKET, description="sorted images")
    uploads_queue: str = Field(default=DEFAULT_UPLOADS_QUEUE, description="S3 notifications for predict")
    predictions_queue: str = Field(default=DEFAULT_PREDICTIONS_QUEUE, description="predictions for router")
    max_receive_count: int = Field(default=5, ge=1, description="deliveries before the dead-letter queue")
    visibility_timeout: int = Field(default=60, ge=1, description="queue visibility timeout, seconds")
    state_dir: Path = Field(default=Path(".partcheck"), description="users, agent outbox, logs, moto state")
    host: str = Field(default="127.0.0.1", description="address the local services listen on")
    moto_port: int = Field(default=4566, ge=1, le=65535, description="local S3/SQS endpoint port")
    review_port: int = Field(default=8000, ge=1, le=65535, description="review service port")
    snapshot_mode: SnapshotMode = Field(
        default=SnapshotMode.COMMIT,
        description="`commit`: moto answers an upload or copy once it is on disk; `interval`: it saves "
        "every `snapshot_seconds` and a crash loses what came in since",
    )
    snapshot_seconds: float = Field(
        default=2.0,
        gt=0,
        description="`interval`: how often moto state is saved; `commit`: how long a deletion or queue "
        "message waits for a snapshot when nothing else starts one",
    )
    start_seconds: float = Field(
        default=30.0, gt=0, description="`up` gives up on a starting moto that shows no progress this long"
    )

    @property
    def local_endpoint(self) -> str:
        """The moto server URL this stack starts (or the configured endpoint)."""
        return self.endpoint_url or f"http://{self.host}:{self.moto_port}"

    def aws(self) -> AwsConfig:
        """The local stack always talks to its moto server, never to real AWS."""
        return AwsConfig(endpoint_url=self.local_endpoint, region=self.region)


MIN_SECRET_CHARS = 32

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "partcheck-local", "AWS_SECRET_ACCESS_KEY": "partcheck-local"}


def use_local_credentials() -> dict[str, str]:
    """Point this process at moto's fake credentials so a real profile can never be used by accident."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(LOCAL_CREDENTIALS)
    return dict(LOCAL_CREDENTIALS)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def persisted_secret(path: Path) -> str:
    """The secret kept in `path`, created (mode 0600) on first use, so it outlives process restarts."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
        try:
            # link() never replaces: when two processes start at once, both end up reading the first one's.
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:
            os.replace(tmp, path)  # a filesystem without hard links
        finally:
            tmp.unlink(missing_ok=True)
    secret = path.read_text().strip()
    if len(secret) < MIN_SECRET_CHARS:
        # A truncated file would sign sessions with a key anyone can guess.
        raise InvalidInput(f"{path} holds no usable secret (under {MIN_SECRET_CHARS} characters); delete it")
    return secret
