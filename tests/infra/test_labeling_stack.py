"""The labeling stack: launcher wiring, event rules and least-privilege IAM.

Built beside the two stacks it imports from, storage (key, bucket) and workforce (work team).
"""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Annotations, Match, Template

from stacks.labeling_stack import LabelingStack
from stacks.workforce_stack import WorkforceStack
from tests.infra.synth import app_with_storage
from tests.infra.test_workforce_stack import only, rendered

pytestmark = pytest.mark.synth  # every test here synthesizes templates

BUCKET = "object-counting-dev-data-<AWS::AccountId>-<AWS::Region>"
OBJECTS = f"arn:<AWS::Partition>:s3:::{BUCKET}"
JOBS = "arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:labeling-job/"


def labeling_stack(**context) -> LabelingStack:
    app, config, storage, env = app_with_storage(**context)
    workforce = WorkforceStack(
        app, f"{config.prefix}-workforce", config=config, storage=storage, env=env
    )
    return LabelingStack(
        app,
        f"{config.prefix}-labeling",
        config=config,
        storage=storage,
        workteam_arn=workforce.workforce.workteam_arn,
        env=env,
    )


def labeling_template(**context) -> Template:
    return Template.from_stack(labeling_stack(**context))


@pytest.fixture(scope="module")
def template() -> Template:
    return labeling_template()


def role_id(template: Template, service: str) -> str:
    roles = template.find_resources(
        "AWS::IAM::Role",
        {
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Statement": [Match.object_like({"Principal": {"Service": service}})]
                }
            }
        },
    )
    assert len(roles) == 1
    return next(iter(roles))


def statements(template: Template, role: str) -> dict[str, dict]:
    """The role's policy statements by Sid (unnamed ones by their first action)."""
    found = {}
    for policy in template.find_resources("AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            for statement in rendered(policy["Properties"]["PolicyDocument"]["Statement"]):
                actions = statement["Action"]
                name = statement.get("Sid") or (actions if isinstance(actions, str) else actions[0])
                found[name] = statement
    return found


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def test_launcher_gets_what_the_stack_knows(template):
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "lambdas.labeling_launcher.handler.main",
            "TracingConfig": {"Mode": "Active"},
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "BUCKET": {
                            "Fn::Join": [
                                "",
                                [
                                    "object-counting-dev-data-",
                                    Match.any_value(),
                                    "-",
                                    Match.any_value(),
                                ],
                            ]
                        },
                        "ROLE_ARN": {
                            "Fn::GetAtt": [role_id(template, "sagemaker.amazonaws.com"), "Arn"]
                        },
                        "WORKTEAM_ARN": {"Fn::ImportValue": Match.string_like_regexp("Workteam")},
                        "KMS_KEY_ARN": {"Fn::ImportValue": Match.string_like_regexp("DataKey")},
                        "JOB_PREFIX": "object-counting-dev",
                        "EVENT_SOURCE": "object-counting-dev.labeling",
                        "WORKERS_PER_OBJECT": "1",
                        "TASK_TIME_LIMIT_SECONDS": "300",
                        "TASK_AVAILABILITY_SECONDS": "864000",
                    }
                )
            },
        },
    )


def test_labeling_settings_reach_the_launcher():
    template = labeling_template(**{"counting.labeling.workers_per_object": "3"})
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "lambdas.labeling_launcher.handler.main",
            "Environment": {"Variables": Match.object_like({"WORKERS_PER_OBJECT": "3"})},
        },
    )


def test_request_uploads_reach_the_launcher_with_retries_and_dead_letters(template):
    queue_id, _ = only(template, "AWS::SQS::Queue")
    rules = template.find_resources(
        "AWS::Events::Rule", {"Properties": {"EventPattern": {"source": ["aws.s3"]}}}
    )
    (rule,) = rules.values()
    pattern = rendered(rule["Properties"]["EventPattern"])
    assert pattern == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [BUCKET]},
            "object": {"key": [{"wildcard": "labeling/requests/*.json"}]},
        },
    }
    (target,) = rule["Properties"]["Targets"]
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}


def test_completed_jobs_of_this_stage_reach_the_launcher(template):
    rules = template.find_resources(
        "AWS::Events::Rule", {"Properties": {"EventPattern": {"source": ["aws.sagemaker"]}}}
    )
    (rule,) = rules.values()
    assert rendered(rule["Properties"]["EventPattern"]) == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Ground Truth Labeling Job State Change"],
        "detail": {"LabelingJobStatus": ["Completed"]},
        "resources": [{"prefix": f"{JOBS}object-counting-dev-"}],
    }
    assert rule["Properties"]["Targets"][0]["DeadLetterConfig"]


def test_failed_invocations_are_retried_then_dead_lettered(template):
    queue_id, queue = only(template, "AWS::SQS::Queue")
    assert "KmsMasterKeyId" in queue["Properties"]
    template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "MaximumRetryAttempts": 2,
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [queue_id, "Arn"]}}},
        },
    )


def test_launcher_permissions_are_scoped(template):
    granted = statements(template, role_id(template, "lambda.amazonaws.com"))
    gt_role = role_id(template, "sagemaker.amazonaws.com")

    assert granted["ReadRequests"]["Resource"] == f"{OBJECTS}/labeling/requests/*"
    assert granted["WriteRejections"]["Resource"] == f"{OBJECTS}/labeling/requests/*.rejected.json"
    assert granted["WriteJobInputs"]["Resource"] == f"{OBJECTS}/labeling/input/*"
    # Deleted again when no job starts, so a refused request leaves only its rejection.
    assert sorted(granted["WriteJobInputs"]["Action"]) == ["s3:DeleteObject", "s3:PutObject"]
    assert granted["ListImages"] == {
        "Sid": "ListImages",
        "Action": "s3:ListBucket",
        "Effect": "Allow",
        "Resource": OBJECTS,
        "Condition": {"StringLike": {"s3:prefix": "labeling/images/*"}},
    }
    assert sorted(as_list(granted["StartAndDescribeJobs"]["Action"])) == [
        "sagemaker:AddTags",
        "sagemaker:CreateLabelingJob",
        "sagemaker:DescribeLabelingJob",
    ]
    assert granted["StartAndDescribeJobs"]["Resource"] == f"{JOBS}object-counting-dev-*"
    assert granted["PassTheGroundTruthRole"] == {
        "Sid": "PassTheGroundTruthRole",
        "Action": "iam:PassRole",
        "Effect": "Allow",
        "Resource": f"<{gt_role}.Arn>",
        "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
    }
    assert granted["AnnounceCompletedJobs"]["Resource"] == (
        "arn:<AWS::Partition>:events:<AWS::Region>:<AWS::AccountId>:event-bus/default"
    )
    # Only X-Ray, which has no resource-level permissions, is granted on "*"; no action
    # is a wildcard.
    for name, statement in granted.items():
        assert statement["Resource"] != "*" or name == "xray:PutTelemetryRecords", name
        assert not any("*" in action for action in as_list(statement["Action"])), name


def test_ground_truth_role_reads_labeling_data_and_writes_only_output(template):
    granted = statements(template, role_id(template, "sagemaker.amazonaws.com"))

    assert granted["ReadImagesAndJobInputs"]["Resource"] == [
        f"{OBJECTS}/labeling/images/*",
        f"{OBJECTS}/labeling/input/*",
        f"{OBJECTS}/labeling/output/*",
    ]
    assert granted["WriteJobOutput"]["Resource"] == f"{OBJECTS}/labeling/output/*"
    assert granted["ListLabelingObjects"]["Condition"] == {
        "StringLike": {"s3:prefix": "labeling/*"}
    }
    assert sorted(as_list(granted["UseTheDataKey"]["Action"])) == [
        "kms:Decrypt",
        "kms:Encrypt",
        "kms:GenerateDataKey",
    ]
    # CloudWatch Logs' documented form for a group and its streams: log-group:NAME:*.
    assert granted["WriteLogs"]["Resource"].endswith(":log-group:/aws/sagemaker/LabelingJobs:*")
    writes = [
        resource
        for statement in granted.values()
        for action in as_list(statement["Action"])
        if action.startswith("s3:Put")
        for resource in as_list(statement["Resource"])
    ]
    assert writes == [f"{OBJECTS}/labeling/output/*"]
    for name, statement in granted.items():
        assert statement["Resource"] != "*" or name == "PutMetrics", name


def test_outputs(template):
    outputs = template.find_outputs("*")
    assert rendered(outputs["LabelingRequestsUri"]["Value"]) == f"s3://{BUCKET}/labeling/requests/"
    assert outputs["CompletionEventSource"]["Value"] == "object-counting-dev.labeling"
    for name in ("LauncherFunctionName", "DeadLetterQueueUrl", "GroundTruthRoleArn"):
        assert name in outputs


def test_a_region_without_ground_truth_fails_synth_with_a_clear_message():
    stack = labeling_stack(**{"counting.account": "123456789012", "counting.region": "sa-east-1"})
    Annotations.from_stack(stack).has_error(
        "*", "Ground Truth bounding-box jobs are not available in region sa-east-1"
    )


def test_a_region_with_ground_truth_synthesizes():
    stack = labeling_stack(**{"counting.account": "123456789012", "counting.region": "eu-west-1"})
    Annotations.from_stack(stack).has_no_error("*", Match.any_value())
