"""Create the stack's buckets, queues (each with a dead-letter queue) and the S3 -> SQS notification."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from partcheck.aws import aws_errors
from partcheck.errors import InvalidInput
from partcheck.stack.config import StackSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

DLQ_SUFFIX = "-dlq"
FOURTEEN_DAYS = 14 * 24 * 3600
DEFAULT_BUCKET_REGION = "us-east-1"  # where a bucket created without a LocationConstraint lives
_LEGACY_LOCATIONS = {"EU": "eu-west-1"}  # what GetBucketLocation says for some old buckets


@dataclass(frozen=True)
class Resources:
    """URLs and ARNs that bootstrap created or found."""

    queue_urls: dict[str, str]
    queue_arns: dict[str, str]


def ensure_bucket(s3: S3Client, bucket: str, region: str) -> None:
    """Create a bucket in `region` (the client's region) unless this account already has it."""
    with (
        aws_errors(f"create bucket {bucket}"),
        contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists),
    ):
        if region == DEFAULT_BUCKET_REGION:
            # S3 refuses a LocationConstraint naming its default region: no constraint means us-east-1.
            s3.create_bucket(Bucket=bucket)
        else:
            location = cast("BucketLocationConstraintType", region)
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": location})


def _queue(sqs: SQSClient, name: str, attributes: dict[QueueAttributeNameType, str]) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    # Attributes are (re)applied separately, so a second bootstrap never fails on a changed setting.
    if attributes:
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def bootstrap(s3: S3Client, sqs: SQSClient, settings: StackSettings) -> Resources:
    """Idempotently create everything the pipeline needs."""
    urls: dict[str, str] = {}
    arns: dict[str, str] = {}
    with aws_errors("bootstrap"):
        for bucket in (settings.inbound_bucket, settings.prediction_bucket):
            ensure_bucket(s3, bucket, settings.region)
        # S3 only notifies queues of the bucket's own region; say so instead of S3's cryptic refusal.
        location = s3.get_bucket_location(Bucket=settings.inbound_bucket).get("LocationConstraint")
        found = _LEGACY_LOCATIONS.get(location or "", location or DEFAULT_BUCKET_REGION)
        if found != settings.region:
            raise InvalidInput(
                f"bucket {settings.inbound_bucket} exists in {found}, not in PARTCHECK_REGION "
                f"{settings.region}: a stack cannot change its region (keep it, or use other bucket names)"
            )
        for name in (settings.uploads_queue, settings.predictions_queue):
            dlq_url, dlq_arn = _queue(sqs, name + DLQ_SUFFIX, {"MessageRetentionPeriod": str(FOURTEEN_DAYS)})
            urls[name + DLQ_SUFFIX], arns[name + DLQ_SUFFIX] = dlq_url, dlq_arn
            redrive = json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": settings.max_receive_count}
            )
            urls[name], arns[name] = _queue(
                sqs,
                name,
                {
                    "RedrivePolicy": redrive,
                    "VisibilityTimeout": str(settings.visibility_timeout),
                    "MessageRetentionPeriod": str(FOURTEEN_DAYS),
                },
            )
        uploads_arn = arns[settings.uploads_queue]
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "S3Notifications",
                    "Effect": "Allow",
                    "Principal": {"Service": "s3.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": uploads_arn,
                    "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{settings.inbound_bucket}"}},
                }
            ],
        }
        sqs.set_queue_attributes(
            QueueUrl=urls[settings.uploads_queue], Attributes={"Policy": json.dumps(policy)}
        )
        s3.put_bucket_notification_configuration(
            Bucket=settings.inbound_bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"Id": "partcheck-uploads", "QueueArn": uploads_arn, "Events": ["s3:ObjectCreated:*"]},
                ]
            },
        )
    return Resources(urls, arns)
