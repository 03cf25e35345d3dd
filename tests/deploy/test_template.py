"""deploy/template.yaml: its security rules read statically, then deployed into moto's CloudFormation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from partcheck.cost import Usage
from tests.deploy.cfn import TEMPLATE, load_template

STACK = "partcheck-test"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/partcheck-{}:test"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def _of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def _statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM statement of roles, role policies and managed policies, with its resource's name."""
    for name, r in template["Resources"].items():
        props = r.get("Properties", {})
        docs = [p["PolicyDocument"] for p in props.get("Policies", [])]
        if r["Type"] in {"AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy", "AWS::IAM::Policy"}:
            docs.append(props["PolicyDocument"])
        for doc in docs:
            for statement in doc["Statement"]:
                yield name, statement


@pytest.mark.unit
def test_visibility_timeout_is_at_least_six_times_the_function_timeout(template: dict[str, Any]) -> None:
    tuning = template["Mappings"]["Tuning"]
    functions = _of_type(template, "AWS::Lambda::Function")
    assert set(functions) == {"PredictFunction", "RouterFunction"}
    for key in ("Predict", "Router"):
        assert tuning[key]["QueueVisibilitySeconds"] >= 6 * tuning[key]["TimeoutSeconds"]
        function = functions[f"{key}Function"]["Properties"]
        assert function["Timeout"] == {"Fn::FindInMap": ["Tuning", key, "TimeoutSeconds"]}
    queues = _of_type(template, "AWS::SQS::Queue")
    assert queues["UploadsQueue"]["Properties"]["VisibilityTimeout"] == {
        "Fn::FindInMap": ["Tuning", "Predict", "QueueVisibilitySeconds"]
    }
    assert queues["PredictionsQueue"]["Properties"]["VisibilityTimeout"] == {
        "Fn::FindInMap": ["Tuning", "Router", "QueueVisibilitySeconds"]
    }


@pytest.mark.unit
def test_no_full_access_and_no_wildcard_resource_but_xray(template: dict[str, Any]) -> None:
    attached = [
        arn
        for r in _of_type(template, "AWS::IAM::Role").values()
        for arn in r["Properties"].get("ManagedPolicyArns", [])
    ]
    assert attached, "the review role attaches AWS's Beanstalk web-tier policy"
    assert not any("FullAccess" in json.dumps(arn) for arn in attached)
    seen_wildcards = []
    for name, statement in _statements(template):
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in a.split(":", 1)[1] for a in actions), (name, actions)
        if "*" in resources:
            seen_wildcards.append(name)
            # The only case AWS requires: X-Ray's two write actions have no resource-level permissions.
            assert sorted(actions) == ["xray:PutTelemetryRecords", "xray:PutTraceSegments"], (name, actions)
    assert sorted(seen_wildcards) == ["PredictFunctionRole", "RouterFunctionRole"]


@pytest.mark.unit
def test_one_role_per_function_and_upload_only_agent_policy(template: dict[str, Any]) -> None:
    functions = _of_type(template, "AWS::Lambda::Function")
    roles = [f["Properties"]["Role"]["Fn::GetAtt"][0] for f in functions.values()]
    assert len(set(roles)) == len(roles) == 2
    agent = template["Resources"]["AgentUploadPolicy"]
    assert agent["Type"] == "AWS::IAM::ManagedPolicy"
    (statement,) = agent["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["s3:PutObject"]
    assert statement["Resource"] == {"Fn::Sub": "${InboundBucket.Arn}/*"}
    profile = template["Resources"]["ReviewInstanceProfile"]["Properties"]
    assert profile["Roles"] == [{"Ref": "ReviewInstanceRole"}]


@pytest.mark.unit
def test_compose_workers_policy_is_exactly_the_functions_s3_and_sqs_statements(
    template: dict[str, Any],
) -> None:
    # docker-compose.aws.yml's workers do the two functions' work; without a policy of their own they ran on
    # hand-made (in practice broad) credentials, as the function roles trust only lambda.amazonaws.com.
    resources = template["Resources"]
    workers = resources["WorkersPolicy"]
    assert workers["Type"] == "AWS::IAM::ManagedPolicy"
    assert workers["Properties"]["ManagedPolicyName"] == {"Fn::Sub": "${ResourcePrefix}-workers"}
    lambda_only = {"OwnLogs", "Tracing"}  # their own log groups and X-Ray: Lambda's, not a server's
    wanted = [
        {**s, "Sid": prefix + s["Sid"]}
        for role, prefix in (("PredictFunctionRole", "Predict"), ("RouterFunctionRole", "Router"))
        for policy in resources[role]["Properties"]["Policies"]
        for s in policy["PolicyDocument"]["Statement"]
        if s["Sid"] not in lambda_only
    ]
    statements = workers["Properties"]["PolicyDocument"]["Statement"]
    assert statements == wanted
    assert len({s["Sid"] for s in statements}) == len(statements), "Sids must be unique in a policy"
    for statement in statements:
        actions = statement["Action"]
        assert all(a.split(":")[0] in {"s3", "sqs"} for a in actions), actions
    assert template["Outputs"]["WorkersPolicyArn"]["Value"] == {"Ref": "WorkersPolicy"}


@pytest.mark.unit
def test_buckets_are_encrypted_private_and_tls_only(template: dict[str, Any]) -> None:
    buckets = _of_type(template, "AWS::S3::Bucket")
    policies = {
        p["Properties"]["Bucket"]["Ref"]: p for p in _of_type(template, "AWS::S3::BucketPolicy").values()
    }
    assert set(buckets) == {"InboundBucket", "PredictionBucket"} == set(policies)
    for name, bucket in buckets.items():
        props = bucket["Properties"]
        rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
        assert all(props["PublicAccessBlockConfiguration"].values())
        assert len(props["PublicAccessBlockConfiguration"]) == 4
        (deny,) = policies[name]["Properties"]["PolicyDocument"]["Statement"]
        assert deny["Effect"] == "Deny"
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    inbound = buckets["InboundBucket"]["Properties"]
    assert inbound["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == {
        "Ref": "InboundExpirationDays"
    }
    notification = inbound["NotificationConfiguration"]["QueueConfigurations"][0]
    assert notification["Queue"] == {"Fn::GetAtt": ["UploadsQueue", "Arn"]}


@pytest.mark.unit
def test_event_sources_report_partial_batch_failures_and_alarms_cover_dlqs(template: dict[str, Any]) -> None:
    mappings = _of_type(template, "AWS::Lambda::EventSourceMapping")
    assert {m["Properties"]["EventSourceArn"]["Fn::GetAtt"][0] for m in mappings.values()} == {
        "UploadsQueue",
        "PredictionsQueue",
    }
    for m in mappings.values():
        assert m["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    alarms = _of_type(template, "AWS::CloudWatch::Alarm")
    watched = {
        a["Properties"]["Dimensions"][0]["Value"].get("Fn::GetAtt", [None])[0]
        or a["Properties"]["Dimensions"][0]["Value"]["Ref"]
        for a in alarms.values()
    }
    assert watched == {
        "UploadsDeadLetterQueue",
        "PredictionsDeadLetterQueue",
        "PredictFunction",
        "RouterFunction",
    }
    # partcheck cost prices exactly the alarms the template creates.
    assert len(alarms) == Usage().alarms


@pytest.mark.unit
def test_parameters_cover_model_images_thresholds_and_alarms(template: dict[str, Any]) -> None:
    assert {
        "PredictImageUri",
        "RouterImageUri",
        "ModelPath",
        "PredictBackend",
        "Threshold",
        "TOk",
        "TDefect",
        "DlqAlarmThreshold",
        "FunctionErrorAlarmThreshold",
    } <= set(template["Parameters"])


@pytest.mark.integration
def test_stack_deploys_into_moto(moto: str) -> None:
    session = boto3.session.Session(region_name="eu-west-1")
    cfn = session.client("cloudformation", endpoint_url=moto)
    cfn.create_stack(
        StackName=STACK,
        TemplateBody=TEMPLATE.read_text(),
        Capabilities=["CAPABILITY_NAMED_IAM"],
        Parameters=[
            {"ParameterKey": "PredictImageUri", "ParameterValue": IMAGE.format("predict")},
            {"ParameterKey": "RouterImageUri", "ParameterValue": IMAGE.format("router")},
            {"ParameterKey": "Threshold", "ParameterValue": "0.8"},
        ],
    )
    stack = cfn.describe_stacks(StackName=STACK)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}

    s3 = session.client("s3", endpoint_url=moto)
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert {outputs["InboundBucketName"], outputs["PredictionBucketName"]} <= buckets
    assert outputs["InboundBucketName"] == "partcheck-inbound-123456789012-eu-west-1"
    encryption = s3.get_bucket_encryption(Bucket=outputs["InboundBucketName"])
    assert (
        encryption["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"][
            "SSEAlgorithm"
        ]
        == "aws:kms"
    )

    sqs = session.client("sqs", endpoint_url=moto)
    names = {url.rsplit("/", 1)[-1] for url in sqs.list_queues()["QueueUrls"]}
    assert names == {
        "partcheck-uploads",
        "partcheck-uploads-dlq",
        "partcheck-predictions",
        "partcheck-predictions-dlq",
    }
    for queue, dlq, visibility in (
        ("partcheck-uploads", "partcheck-uploads-dlq", 360),
        ("partcheck-predictions", "partcheck-predictions-dlq", 180),
    ):
        url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attrs["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"].endswith(f":{dlq}")
        assert int(redrive["maxReceiveCount"]) == 5
        assert int(attrs["VisibilityTimeout"]) == visibility

    iam = session.client("iam", endpoint_url=moto)
    roles = {r["RoleName"] for r in iam.list_roles()["Roles"]}
    assert {"partcheck-predict-function", "partcheck-router-function", "partcheck-review-instance"} <= roles
    for role in ("partcheck-predict-function", "partcheck-router-function"):
        attached = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
        assert attached == []  # inline least-privilege policies only
        assert iam.list_role_policies(RoleName=role)["PolicyNames"]
    profile = iam.get_instance_profile(InstanceProfileName="partcheck-review-instance")["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == ["partcheck-review-instance"]
    agent = iam.get_policy(PolicyArn=outputs["AgentUploadPolicyArn"])["Policy"]
    version = iam.get_policy_version(PolicyArn=agent["Arn"], VersionId=agent["DefaultVersionId"])
    document = version["PolicyVersion"]["Document"]
    if isinstance(document, str):
        document = json.loads(document)
    assert [s["Action"] for s in document["Statement"]] == [["s3:PutObject"]]
    workers = iam.get_policy(PolicyArn=outputs["WorkersPolicyArn"])["Policy"]
    assert workers["PolicyName"] == "partcheck-workers"
    version = iam.get_policy_version(PolicyArn=workers["Arn"], VersionId=workers["DefaultVersionId"])
    document = version["PolicyVersion"]["Document"]
    if isinstance(document, str):
        document = json.loads(document)
    resources = json.dumps(document)
    assert outputs["InboundBucketName"] in resources
    assert "partcheck-predictions-dlq" in resources

    lam = session.client("lambda", endpoint_url=moto)
    router = lam.get_function_configuration(FunctionName=outputs["RouterFunctionName"])
    assert router["Environment"]["Variables"]["PARTCHECK_ROUTER_THRESHOLD"] == "0.8"
    assert router["Timeout"] == 30
    mappings = lam.list_event_source_mappings()["EventSourceMappings"]
    assert len(mappings) == 2
    assert all(m["FunctionResponseTypes"] == ["ReportBatchItemFailures"] for m in mappings)
