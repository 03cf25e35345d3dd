"""The local stack. `SnapshotMode` lives here so the CLI can name it without importing pydantic or moto."""

from enum import StrEnum


class SnapshotMode(StrEnum):
    """When the local AWS writes its state to disk."""

    COMMIT = "commit"  # a change is answered only once a snapshot holds it: a crash loses nothing answered
    INTERVAL = "interval"  # every `snapshot_seconds`: answers at once, a crash loses the last interval
