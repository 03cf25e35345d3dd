"""The agent's S3 adapter: one conditional, checksummed PUT per file; botocore errors never leave here."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from enum import Enum

from partcheck.errors import AccessDenied, AlreadyExists, StorageUnavailable
from partcheck.storage import ObjectStore


class Outcome(Enum):
    """How a PUT ended."""

    UPLOADED = "uploaded"
    ALREADY_PRESENT = "already present"  # our bytes were there (an earlier attempt landed)
    ALREADY_PRESENT_UNVERIFIED = "already present, unverified"  # upload-only credentials cannot HEAD
    KEY_TAKEN = "key taken"  # other content holds the key


@dataclass(frozen=True)
class PutResult:
    """Outcome and ETag (when known)."""

    outcome: Outcome
    etag: str | None = None


def checksum_b64(sha256_hex: str) -> str:
    """S3's ChecksumSHA256 header value: base64 of the raw digest."""
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii")


class Uploader:
    """Conditional PUTs into one bucket."""

    def __init__(self, store: ObjectStore, bucket: str) -> None:
        self.store = store
        self.bucket = bucket

    def put(
        self,
        key: str,
        body: bytes,
        *,
        sha256_hex: str,
        metadata: dict[str, str],
        content_type: str,
        sent_before: bool,
    ) -> PutResult:
        """PUT if absent with a SHA-256 S3 verifies; a taken key is ours if its sha256 metadata matches."""
        try:
            etag = self.store.put(
                self.bucket,
                key,
                body,
                metadata=metadata,
                content_type=content_type,
                if_absent=True,
                checksum_sha256=checksum_b64(sha256_hex),
            )
            return PutResult(Outcome.UPLOADED, etag)
        except AlreadyExists as exc:
            # A 412 on a PUT the client retried may answer our own earlier try of this very call.
            sent_before = sent_before or _retried_by_client(exc)
        try:
            info = self.store.head(self.bucket, key)
        except AccessDenied:
            # Without s3:GetObject the object cannot be read back: if an earlier attempt of ours may have
            # reached S3, it is ours; a first attempt meeting a taken key means someone else's object.
            return PutResult(Outcome.ALREADY_PRESENT_UNVERIFIED if sent_before else Outcome.KEY_TAKEN)
        if info is None:
            raise StorageUnavailable(f"s3://{self.bucket}/{key} was taken, then gone; trying again")
        if info.metadata.get("sha256") == sha256_hex:
            return PutResult(Outcome.ALREADY_PRESENT, info.etag)
        return PutResult(Outcome.KEY_TAKEN)


def _retried_by_client(exc: BaseException) -> bool:
    """True if botocore retried the call inside itself (the agent's client should not; see agent/cli.py)."""
    cause = exc.__cause__
    response = getattr(cause, "response", None)
    if not isinstance(response, dict):
        return False
    return int(response.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0) > 0
