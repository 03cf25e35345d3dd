"""Unit tests of the agent's S3 adapter decisions, with a fake object store."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from botocore.exceptions import ClientError

from agent.s3 import Outcome, Uploader, checksum_b64
from partcheck.aws import aws_errors
from partcheck.errors import AccessDenied, AlreadyExists, StorageUnavailable
from partcheck.storage import ObjectInfo

pytestmark = pytest.mark.unit

SHA = hashlib.sha256(b"bytes").hexdigest()


class FakeStore:
    """put() raises or returns an ETag; head() returns, raises or finds nothing, as configured."""

    def __init__(self, put_error: Exception | None = None, head: Any = None) -> None:
        self.put_error = put_error
        self.head_result = head
        self.puts: list[dict[str, Any]] = []

    def put(self, bucket: str, key: str, body: bytes, **kwargs: Any) -> str:
        self.puts.append({"bucket": bucket, "key": key, **kwargs})
        if self.put_error:
            raise self.put_error
        return "etag-1"

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        if isinstance(self.head_result, Exception):
            raise self.head_result
        return self.head_result  # type: ignore[no-any-return]


def _put(store: FakeStore, sent_before: bool = False) -> Outcome:
    up = Uploader(store, "bucket")  # type: ignore[arg-type]
    return up.put("k", b"bytes", sha256_hex=SHA, metadata={"sha256": SHA}, content_type="image/jpeg",
                  sent_before=sent_before).outcome  # fmt: skip


def test_put_is_conditional_and_checksummed() -> None:
    store = FakeStore()
    assert _put(store) is Outcome.UPLOADED
    call = store.puts[0]
    assert call["if_absent"] is True
    assert call["checksum_sha256"] == base64.b64encode(hashlib.sha256(b"bytes").digest()).decode()
    assert checksum_b64(SHA) == call["checksum_sha256"]


def test_taken_key_with_our_sha_is_done() -> None:
    info = ObjectInfo("bucket", "k", 5, "etag-0", metadata={"sha256": SHA})
    assert _put(FakeStore(AlreadyExists("412"), info)) is Outcome.ALREADY_PRESENT


def test_taken_key_with_other_content_needs_another_key() -> None:
    info = ObjectInfo("bucket", "k", 5, "etag-0", metadata={"sha256": "0" * 64})
    assert _put(FakeStore(AlreadyExists("412"), info)) is Outcome.KEY_TAKEN


def _precondition_failed(retry_attempts: int) -> AlreadyExists:
    """AlreadyExists as ObjectStore raises it, from botocore's 412 after `retry_attempts` retries."""
    error = {"Code": "PreconditionFailed", "Message": "At least one of the preconditions did not hold"}
    meta = {"HTTPStatusCode": 412, "RetryAttempts": retry_attempts}
    response: Any = {"Error": error, "ResponseMetadata": meta}
    try:
        with aws_errors("put s3://bucket/k"):
            raise ClientError(response, "PutObject")
    except AlreadyExists as exc:
        return exc
    raise AssertionError("not translated")


def test_upload_only_credentials_cannot_verify() -> None:
    # An earlier attempt of ours (a row claimed before) may have landed: the object counts as ours.
    store = FakeStore(AlreadyExists("412"), AccessDenied("403"))
    assert _put(store, sent_before=True) is Outcome.ALREADY_PRESENT_UNVERIFIED
    # A first attempt that reached S3 once (the agent's client never retries inside a call, see
    # test_agent_s3_client_makes_one_attempt_per_call) met someone else's object: use another key.
    store = FakeStore(_precondition_failed(retry_attempts=0), AccessDenied("403"))
    assert _put(store, sent_before=False) is Outcome.KEY_TAKEN


def test_a_412_on_a_put_botocore_retried_may_be_our_own_object() -> None:
    # A client that does retry: the retry of a PUT whose first try landed meets our own object.
    store = FakeStore(_precondition_failed(retry_attempts=1), AccessDenied("403"))
    assert _put(store, sent_before=False) is Outcome.ALREADY_PRESENT_UNVERIFIED


def test_agent_s3_client_makes_one_attempt_per_call() -> None:
    from agent.cli import s3_client
    from agent.settings import AgentSettings

    client = s3_client(AgentSettings(endpoint_url="http://127.0.0.1:9"))
    assert client.meta.config.retries["total_max_attempts"] == 1  # the outbox does the retrying


def test_taken_then_gone_is_retried() -> None:
    with pytest.raises(StorageUnavailable):
        _put(FakeStore(AlreadyExists("412"), None))


def test_transient_errors_pass_through() -> None:
    with pytest.raises(StorageUnavailable):
        _put(FakeStore(StorageUnavailable("connection refused")))
