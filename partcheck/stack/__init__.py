"""The local stack. What the CLI and moto's server share lives here, importable without pydantic or moto."""

from enum import StrEnum


class SnapshotMode(StrEnum):
    """When the local AWS writes its state to disk."""

    COMMIT = "commit"  # a change is answered only once a snapshot holds it: a crash loses nothing answered
    INTERVAL = "interval"  # every `snapshot_seconds`: answers at once, a crash loses the last interval


# moto's answer on its snapshots (`keepalive.Changes.health`). Not an S3 or SQS route: moto serves
# /moto-api/ itself, and no bucket can be named by a request there.
HEALTH_PATH = "/moto-api/partcheck/health"
