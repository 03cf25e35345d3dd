"""Settings of the edge upload agent (environment prefix PARTCHECK_AGENT_), read once at the entry point."""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from agent.files import render_key
from partcheck.errors import InvalidInput, InvalidKey
from partcheck.settings import DEFAULT_INBOUND_BUCKET, AwsSettings

DEFAULT_KEY_TEMPLATE = "{prefix}/{line}/{camera}/{date}/{name}"
DEFAULT_FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "WEBP")
KEY_TEMPLATE_FIELDS = "{prefix} {line} {camera} {date} {name} {stem} {suffix} {sha8} {subdir}"


# S3's naming rules for general-purpose buckets (the dotted IP-address form aside).
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def bucket_problem(bucket: str) -> str | None:
    """Why `bucket` cannot be an S3 bucket name (the shipped placeholder, say), or None if it can be one."""
    if _BUCKET_RE.fullmatch(bucket) and ".." not in bucket:
        return None
    return (
        f"bucket {bucket!r} is not an S3 bucket name (3-63 of a-z, 0-9, '.', '-'); "
        "use the stack output InboundBucketName"
    )


class AgentSettings(AwsSettings):
    """Where the agent watches, where it uploads, and how patient it is."""

    model_config = SettingsConfigDict(env_prefix="PARTCHECK_AGENT_", extra="ignore")

    watch: Path | None = Field(default=None, description="folder the camera software writes images into")
    bucket: str = Field(default=DEFAULT_INBOUND_BUCKET, description="inbound bucket")
    prefix: str = Field(default="", description="first key segment; empty means none")
    line: str = Field(default="line-1", description="production line, a key segment and object metadata")
    camera: str = Field(default="cam-1", description="camera, a key segment and object metadata")
    key_template: str = Field(
        default=DEFAULT_KEY_TEMPLATE,
        description=f"object key; {KEY_TEMPLATE_FIELDS}",
    )
    poll: bool = Field(default=False, description="poll the folder instead of OS events (network shares)")
    poll_interval_s: float = Field(default=1.0, gt=0, description="directory poll period with --poll")
    close_events: bool = Field(
        default=True, description="trust close-after-write events where the OS has them (Linux inotify)"
    )
    stability_wait_s: float = Field(
        default=0.25, ge=0, description="size and mtime unchanged this long means a file is finished"
    )
    scan_settle_s: float = Field(
        default=2.0, ge=0, description="stability wait for files found by a scan rather than an event"
    )
    open_warn_s: float = Field(default=60.0, gt=0, description="warn once about a file still being written")
    rescan_interval_s: float = Field(default=30.0, gt=0, description="period of the safety-net folder scan")
    state_dir: Path = Field(
        default=Path(".partcheck/agent"), description="outbox database and default archive"
    )
    max_file_bytes: int = Field(
        default=20 * 1024 * 1024, gt=0, description="larger files are skipped (predict rejects them anyway)"
    )
    formats: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_FORMATS, description="accepted image formats (by content)"
    )
    # 8: a PUT mostly waits on the network; botocore's pool holds 10 connections.
    workers: int = Field(default=8, ge=1, le=10, description="parallel uploads")
    backoff_base_s: float = Field(default=0.5, gt=0, description="first retry delay after a transient error")
    backoff_max_s: float = Field(default=30.0, gt=0, description="longest retry delay; retries never stop")
    after_upload: Literal["keep", "archive", "delete"] = Field(
        default="archive", description="what happens to a file once S3 confirmed it"
    )
    archive_dir: Path | None = Field(
        default=None, description="archive folder; unset means <state_dir>/archive"
    )
    archive_quota_mb: float = Field(default=1024.0, ge=0, description="archive size limit, oldest out first")
    retention_days: float = Field(
        default=30.0,
        ge=0,
        description="forget settled rows of files no longer in the folder after this; 0 = never",
    )
    metrics_port: int | None = Field(default=None, ge=0, le=65535, description="serve /metrics on this port")
    metrics_host: str = Field(default="127.0.0.1", description="address of the /metrics endpoint")
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", description="json lines, or text; auto is text on a terminal, json otherwise"
    )
    status_line: bool | None = Field(default=None, description="live status line; unset means on a terminal")
    shutdown_grace_s: float = Field(default=3.0, ge=0, description="how long a stop waits for uploads")

    @field_validator("formats", mode="before")
    @classmethod
    def _split_formats(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(f.strip().upper() for f in value.split(",") if f.strip())
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        # The shipped config carries a placeholder (`<InboundBucketName>`): refusing it here says so at
        # start, where otherwise every upload would fail on it and wait in the outbox.
        problem = bucket_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("key_template")
    @classmethod
    def _template_has_name(cls, value: str) -> str:
        if "{name}" not in value and "{stem}" not in value and "{sha8}" not in value:
            raise ValueError("key_template must contain {name}, {stem} or {sha8}")
        # Render once with sample values: an unknown field or a bad format spec would fail every file.
        try:
            render_key(value, prefix="plant", line="line-1", camera="cam-1", captured=datetime.now(UTC),
                       name="sample.jpg", sha256="0" * 64, subdir="sub")  # fmt: skip
        except InvalidKey as exc:
            raise ValueError(f"{exc} (fields: {KEY_TEMPLATE_FIELDS})") from exc
        return value

    def archive_path(self) -> Path:
        """The archive folder, defaulting to one under the state folder."""
        return self.archive_dir if self.archive_dir is not None else self.state_dir / "archive"

    def outbox_path(self) -> Path:
        """The SQLite outbox file."""
        return self.state_dir / "outbox.sqlite3"


def read_config_file(path: Path) -> dict[str, Any]:
    """Values from a TOML config file: top-level keys, or an `[agent]` table."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"cannot read config file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"config file {path} is not valid TOML: {exc}") from exc
    table = data.get("agent", data)
    if not isinstance(table, dict):
        raise InvalidInput(f"config file {path}: [agent] must be a table")
    return dict(table)


def load_settings(
    config_file: Path | None = None, *, check_bucket: bool = True, **overrides: Any
) -> AgentSettings:
    """Settings with CLI overrides above the environment above the config file above defaults.

    `check_bucket=False` takes a bucket that cannot be an S3 bucket name as it is (for `status`, which
    never uploads); `bucket_problem` then says what is wrong with it.
    """
    file_values = read_config_file(config_file) if config_file else {}
    given = {k: v for k, v in overrides.items() if v is not None}

    class _Layered(AgentSettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, env_settings, InitSettingsSource(settings_cls, init_kwargs=file_values)

    class _BucketUnchecked(_Layered):
        @field_validator("bucket")
        @classmethod
        def _bucket_name(cls, value: str) -> str:  # replaces the check of the same name
            return value

    return (_Layered if check_bucket else _BucketUnchecked)(**given)
