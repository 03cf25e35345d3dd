"""AWS settings, client construction and botocore error translation, shared by every adapter."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, overload

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from pydantic import BaseModel

from partcheck.errors import (
    AccessDenied,
    AlreadyExists,
    InvalidInput,
    NotFound,
    PartcheckError,
    StorageUnavailable,
)

if TYPE_CHECKING:
    from mypy_boto3_rekognition import RekognitionClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient


class AwsConfig(BaseModel):
    """Where AWS is: `endpoint_url` points the same code at AWS or at the local moto server."""

    endpoint_url: str | None = None
    region: str = "eu-west-1"
    max_attempts: int = 5
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0


@overload
def client(service: Literal["s3"], aws: AwsConfig) -> S3Client: ...
@overload
def client(service: Literal["sqs"], aws: AwsConfig) -> SQSClient: ...
@overload
def client(service: Literal["rekognition"], aws: AwsConfig) -> RekognitionClient: ...
def client(service: str, aws: AwsConfig) -> Any:
    """Build one boto3 client; call at an entry point and pass the client in."""
    config = Config(
        region_name=aws.region,
        retries={"max_attempts": aws.max_attempts, "mode": "standard"},
        connect_timeout=aws.connect_timeout_s,
        read_timeout=aws.read_timeout_s,
        # Path-style keeps bucket names out of DNS, which the local endpoint needs.
        s3={"addressing_style": "path"} if aws.endpoint_url else None,
    )
    # A fresh session per client: boto3's default session is not thread-safe to build clients from.
    session: Any = boto3.session.Session()
    return session.client(service, endpoint_url=aws.endpoint_url, config=config)


_NOT_FOUND = {
    "NoSuchKey",
    "NoSuchBucket",
    "404",
    "NotFound",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "ResourceNotFoundException",
}
_EXISTS = {"PreconditionFailed", "412", "ConditionalRequestConflict", "BucketAlreadyOwnedByYou"}
_DENIED = {"AccessDenied", "403", "AccessDeniedException", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
_INVALID = {
    "InvalidArgument",
    "InvalidRequest",
    "MalformedXML",
    "InvalidParameterValue",
    "InvalidParameterException",
    "InvalidImageFormatException",
    "ImageTooLargeException",
    "KeyTooLongError",
    "EntityTooLarge",
}


def translate(exc: Exception, what: str) -> PartcheckError:
    """Map a botocore exception onto partcheck's own error types."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        message = f"{what}: {code} {exc.response.get('Error', {}).get('Message', '')}".strip()
        if code in _NOT_FOUND:
            return NotFound(message)
        if code in _EXISTS:
            return AlreadyExists(message)
        if code in _DENIED:
            return AccessDenied(message)
        if code in _INVALID:
            return InvalidInput(message)
        return StorageUnavailable(message)
    if isinstance(exc, EndpointConnectionError | BotoCoreError):
        return StorageUnavailable(f"{what}: {exc}")
    return PartcheckError(f"{what}: {exc}")


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """Re-raise botocore errors inside the block as partcheck errors."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, what) from exc
