"""Thin S3 and SQS adapters: the only place the services touch boto3, errors translated at the boundary."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from partcheck.aws import aws_errors, translate
from partcheck.errors import InvalidInput, NotFound, PartcheckError, StorageUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import (
        DeleteMessageBatchRequestEntryTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD or a listing tells about one object."""

    bucket: str
    key: str
    size: int
    etag: str
    last_modified: datetime | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None


@dataclass(frozen=True)
class StoredObject:
    """An object's bytes with its description."""

    info: ObjectInfo
    body: bytes


def _etag(raw: str | None) -> str:
    return (raw or "").strip('"')


class ObjectStore:
    """S3 operations the services need, raising partcheck errors only."""

    def __init__(self, s3: S3Client) -> None:
        self._s3 = s3

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        """Describe an object, or None if it does not exist."""
        try:
            with aws_errors(f"head s3://{bucket}/{key}"):
                r = self._s3.head_object(Bucket=bucket, Key=key)
        except NotFound:
            return None
        return ObjectInfo(
            bucket,
            key,
            r["ContentLength"],
            _etag(r.get("ETag")),
            r.get("LastModified"),
            dict(r.get("Metadata", {})),
            r.get("ContentType"),
        )

    def get(self, bucket: str, key: str, max_bytes: int | None = None) -> StoredObject:
        """Read an object whole; NotFound if absent, InvalidInput if larger than `max_bytes`."""
        with aws_errors(f"get s3://{bucket}/{key}"):
            r = self._s3.get_object(Bucket=bucket, Key=key)
            size = r["ContentLength"]
            info = ObjectInfo(
                bucket,
                key,
                size,
                _etag(r.get("ETag")),
                r.get("LastModified"),
                dict(r.get("Metadata", {})),
                r.get("ContentType"),
            )
            if max_bytes is not None and size > max_bytes:
                r["Body"].close()
                raise InvalidInput(f"object is {size} bytes, over the limit of {max_bytes}")
            body = r["Body"].read()
        return StoredObject(info, body)

    def put(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        metadata: dict[str, str] | None = None,
        content_type: str | None = None,
        if_absent: bool = False,
        checksum_sha256: str | None = None,
        if_match: str | None = None,
    ) -> str:
        """Write an object and return its ETag; AlreadyExists if the key is taken (`if_absent`) or its
        ETag is no longer `if_match` (a compare-and-swap overwrite)."""
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": body, "Metadata": metadata or {}}
        if content_type:
            kwargs["ContentType"] = content_type
        if if_absent:
            kwargs["IfNoneMatch"] = "*"
        if if_match:
            kwargs["IfMatch"] = f'"{if_match.strip(chr(34))}"'
        if checksum_sha256:
            kwargs["ChecksumSHA256"] = checksum_sha256
        with aws_errors(f"put s3://{bucket}/{key}"):
            r = self._s3.put_object(**kwargs)
        return _etag(r.get("ETag"))

    def copy(
        self,
        source: tuple[str, str],
        bucket: str,
        key: str,
        *,
        metadata: dict[str, str],
        content_type: str | None = None,
        if_absent: bool = False,
        source_etag: str | None = None,
    ) -> str:
        """Copy an object inside S3 with new metadata and return the copy's ETag.

        NotFound if the source (or a bucket) is missing; AlreadyExists if the key is taken (`if_absent`)
        or the source's ETag is no longer `source_etag`.
        """
        kwargs: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "CopySource": {"Bucket": source[0], "Key": source[1]},
            "MetadataDirective": "REPLACE",
            "Metadata": metadata,
            "ContentType": content_type or "application/octet-stream",
        }
        if if_absent:
            kwargs["IfNoneMatch"] = "*"
        if source_etag:
            kwargs["CopySourceIfMatch"] = f'"{source_etag.strip(chr(34))}"'
        with aws_errors(f"copy s3://{source[0]}/{source[1]} to s3://{bucket}/{key}"):
            r = self._s3.copy_object(**kwargs)
        return _etag(r.get("CopyObjectResult", {}).get("ETag"))

    def delete(self, bucket: str, key: str, *, if_match: str | None = None) -> None:
        """Delete an object, if its ETag is still `if_match` (else AlreadyExists); an absent key is fine."""
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if if_match:
            kwargs["IfMatch"] = f'"{if_match.strip(chr(34))}"'
        with aws_errors(f"delete s3://{bucket}/{key}"):
            try:
                self._s3.delete_object(**kwargs)
            except ClientError as exc:
                # A conditional delete answers 404 for an absent key, which a plain delete accepts.
                if exc.response.get("Error", {}).get("Code") != "NoSuchKey":
                    raise

    def delete_many(
        self, bucket: str, keys: Sequence[str] | Mapping[str, str | None]
    ) -> dict[str, PartcheckError]:
        """Delete objects 1,000 to a call, each given an ETag only if it still has it; returns the rest."""
        # Each key not deleted comes with why; AlreadyExists means its ETag no longer matched (newer bytes,
        # not a failure to retry). Absent keys count as deleted.
        wanted: dict[str, str | None] = dict(keys) if isinstance(keys, Mapping) else dict.fromkeys(keys)
        items = list(wanted.items())
        failed: dict[str, PartcheckError] = {}
        for start in range(0, len(items), 1000):
            chunk = items[start : start + 1000]
            objects: list[ObjectIdentifierTypeDef] = [
                {"Key": k, "ETag": f'"{etag.strip(chr(34))}"'} if etag else {"Key": k} for k, etag in chunk
            ]
            try:
                with aws_errors(f"delete {len(chunk)} objects from s3://{bucket}"):
                    r = self._s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
            except PartcheckError as exc:
                failed.update(dict.fromkeys((k for k, _ in chunk), exc))
                continue
            for e in r.get("Errors", []):
                key = e.get("Key", "")
                if e.get("Code") == "NoSuchKey":
                    continue  # a conditional delete of an absent key: gone, as wanted
                # The per-key errors carry S3 error codes: translated as a failed call's would be.
                error = ClientError(
                    {"Error": {"Code": e.get("Code", ""), "Message": e.get("Message", "")}}, "DeleteObjects"
                )
                failed[key] = translate(error, f"delete s3://{bucket}/{key}")
        return failed

    def list(self, bucket: str, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Every object under a prefix in key order, across S3's 1,000-key pages."""
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if start_after:
            kwargs["StartAfter"] = start_after
        paginator = self._s3.get_paginator("list_objects_v2")
        with aws_errors(f"list s3://{bucket}/{prefix}"):
            for page in paginator.paginate(**kwargs):
                for o in page.get("Contents", []):
                    yield ObjectInfo(bucket, o["Key"], o["Size"], _etag(o.get("ETag")), o.get("LastModified"))


@dataclass(frozen=True)
class QueueMessage:
    """One received SQS message."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    attributes: dict[str, str] = field(default_factory=dict)


class Queue:
    """One SQS queue: long-poll, delete after success, send."""

    def __init__(self, sqs: SQSClient, url: str) -> None:
        self._sqs = sqs
        self.url = url

    @classmethod
    def by_name(cls, sqs: SQSClient, name: str) -> Queue:
        """Resolve a queue by name; NotFound if it does not exist."""
        with aws_errors(f"resolve queue {name}"):
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return cls(sqs, url)

    def receive(
        self,
        max_messages: int = 10,
        wait_s: int = 20,
        visibility_s: int | None = None,
    ) -> list[QueueMessage]:
        """Long-poll for up to `max_messages` messages."""
        kwargs: dict[str, Any] = {
            "QueueUrl": self.url,
            "MaxNumberOfMessages": max_messages,
            "WaitTimeSeconds": wait_s,
            "MessageSystemAttributeNames": ["All"],
        }
        if visibility_s is not None:
            kwargs["VisibilityTimeout"] = visibility_s
        with aws_errors(f"receive from {self.url}"):
            r = self._sqs.receive_message(**kwargs)
        out = []
        for m in r.get("Messages", []):
            attrs: dict[str, str] = {str(k): v for k, v in m.get("Attributes", {}).items()}
            out.append(
                QueueMessage(
                    m["MessageId"],
                    m["ReceiptHandle"],
                    m.get("Body", ""),
                    int(attrs.get("ApproximateReceiveCount", "1")),
                    attrs,
                )
            )
        return out

    def delete(self, receipt_handle: str) -> None:
        """Acknowledge a message after its work succeeded."""
        with aws_errors(f"delete message from {self.url}"):
            self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=receipt_handle)

    def delete_batch(self, receipt_handles: list[str]) -> None:
        """Acknowledge messages ten to a call; StorageUnavailable says how many and which were not deleted."""
        entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
            {"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(receipt_handles)
        ]
        # Every chunk is tried even after a failure, so one error never leaves the rest undeleted.
        failed: dict[int, str] = {}
        for start in range(0, len(entries), 10):
            chunk = entries[start : start + 10]
            try:
                with aws_errors(f"delete messages from {self.url}"):
                    r = self._sqs.delete_message_batch(QueueUrl=self.url, Entries=chunk)
            except PartcheckError as exc:
                failed.update({start + n: str(exc) for n in range(len(chunk))})
                continue
            for f in r.get("Failed", []):
                failed[int(f["Id"])] = f"{f.get('Code', '')} {f.get('Message', '')}".strip()
        if failed:
            first = min(failed)
            raise StorageUnavailable(
                f"{len(failed)} of {len(receipt_handles)} messages not deleted from {self.url} "
                f"(positions {sorted(failed)}); first: {failed[first]}"
            )

    def send(self, body: str) -> str:
        """Send one message and return its id."""
        with aws_errors(f"send to {self.url}"):
            return self._sqs.send_message(QueueUrl=self.url, MessageBody=body)["MessageId"]

    def send_batch(self, bodies: Sequence[str]) -> dict[int, str]:
        """Send messages ten to a call; returns the index and reason of each one that was not sent."""
        failed: dict[int, str] = {}
        for start in range(0, len(bodies), 10):
            chunk = bodies[start : start + 10]
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {"Id": str(start + n), "MessageBody": body} for n, body in enumerate(chunk)
            ]
            try:
                with aws_errors(f"send to {self.url}"):
                    r = self._sqs.send_message_batch(QueueUrl=self.url, Entries=entries)
            except PartcheckError as exc:
                failed.update({start + n: str(exc) for n in range(len(chunk))})
                continue
            for f in r.get("Failed", []):
                failed[int(f["Id"])] = f"{f.get('Code', '')} {f.get('Message', '')}".strip()
        return failed

    def counts(self) -> dict[str, int]:
        """Visible, in-flight and delayed message counts."""
        with aws_errors(f"attributes of {self.url}"):
            a = self._sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["All"])["Attributes"]
        return {
            "visible": int(a.get("ApproximateNumberOfMessages", 0)),
            "in_flight": int(a.get("ApproximateNumberOfMessagesNotVisible", 0)),
            "delayed": int(a.get("ApproximateNumberOfMessagesDelayed", 0)),
        }
