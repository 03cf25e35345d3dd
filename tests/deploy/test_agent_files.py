"""deploy/agent/: the shipped configuration and IAM policy never name a bucket the stack does not create."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from botocore.exceptions import ParamValidationError
from botocore.handlers import validate_bucket_name
from pydantic import ValidationError

from agent.settings import load_settings
from tests.deploy.cfn import load_template

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
AGENT_TOML = ROOT / "deploy" / "agent" / "agent.toml"
IAM_POLICY = ROOT / "deploy" / "agent" / "iam-policy.json"


def _stack_bucket_pattern() -> re.Pattern[str]:
    """The inbound bucket names the template can create, read from its BucketName."""
    template = load_template()
    name = template["Resources"]["InboundBucket"]["Properties"]["BucketName"]["Fn::Sub"]
    prefix = template["Parameters"]["ResourcePrefix"]["AllowedPattern"].strip("^$")
    pattern = (
        re.escape(name)
        .replace(re.escape("${ResourcePrefix}"), prefix)
        .replace(re.escape("${AWS::AccountId}"), r"\d{12}")
        .replace(re.escape("${AWS::Region}"), r"[a-z]{2}(-[a-z]+)+-\d")
    )
    return re.compile(pattern)


def _shipped_buckets() -> dict[str, str]:
    config = tomllib.loads(AGENT_TOML.read_text())["agent"]["bucket"]
    (statement,) = json.loads(IAM_POLICY.read_text())["Statement"]
    arn = re.fullmatch(r"arn:aws:s3:::(.+)/\*", statement["Resource"])
    assert arn, statement["Resource"]
    return {"agent.toml": config, "iam-policy.json": arn.group(1)}


def _refused_by_the_client(bucket: str) -> bool:
    try:
        validate_bucket_name({"Bucket": bucket})
    except ParamValidationError:
        return True
    return False


def test_shipped_files_name_a_stack_bucket_or_an_unusable_placeholder() -> None:
    # `partcheck-inbound` looked real but the stack names the bucket <prefix>-inbound-<account>-<region>:
    # used as shipped it meant NoSuchBucket, AccessDenied, or another account's bucket of that name.
    pattern = _stack_bucket_pattern()
    assert pattern.fullmatch("partcheck-inbound-123456789012-eu-west-1")
    buckets = _shipped_buckets()
    for path, bucket in buckets.items():
        assert pattern.fullmatch(bucket) or _refused_by_the_client(bucket), (
            f"deploy/agent/{path} names bucket {bucket!r}, which the stack never creates"
        )
    assert len(set(buckets.values())) == 1, f"the two files disagree: {buckets}"


def test_agent_left_with_the_placeholder_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARTCHECK_AGENT_BUCKET", raising=False)
    with pytest.raises(ValidationError, match="use the stack output InboundBucketName"):
        load_settings(AGENT_TOML)
    # With the placeholder replaced, the same file is a valid configuration.
    monkeypatch.setenv("PARTCHECK_AGENT_BUCKET", "partcheck-inbound-123456789012-eu-west-1")
    assert load_settings(AGENT_TOML).bucket == "partcheck-inbound-123456789012-eu-west-1"
