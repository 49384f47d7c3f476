"""The training stack's roles grant what AWS's documented policies grant, scoped.

The documented actions are typed here from the pages; the app may scope them tighter
(the reason is beside each statement in the code) but may not leave one out.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.contracts.conftest import synthesized

pytestmark = pytest.mark.synth  # every test here builds the CDK app

# createTrainingJob.sync: Step Functions' policy for the state machine's role, plus AddTags
# (Step Functions tags the jobs it starts; CDK's SageMakerCreateTrainingJob grants it).
# https://docs.aws.amazon.com/step-functions/latest/dg/sagemaker-iam.html
SYNC_TRAINING = {
    "sagemaker:CreateTrainingJob",
    "sagemaker:DescribeTrainingJob",
    "sagemaker:StopTrainingJob",
    "sagemaker:ListTags",
    "sagemaker:AddTags",
    "iam:PassRole",
    "events:PutTargets",
    "events:PutRule",
    "events:DescribeRule",
}
SYNC_RULE = ":rule/StepFunctionsGetEventsForSageMakerTrainingJobsRule"
# createTransformJob.sync (the run's count evaluation): the same policy for transform jobs;
# no iam:PassRole of its own, since CreateTransformJob takes no role (the model's runs it).
SYNC_TRANSFORM = {
    "sagemaker:CreateTransformJob",
    "sagemaker:DescribeTransformJob",
    "sagemaker:StopTransformJob",
    "sagemaker:ListTags",
    "sagemaker:AddTags",
    "events:PutTargets",
    "events:PutRule",
    "events:DescribeRule",
}
SYNC_TRANSFORM_RULE = ":rule/StepFunctionsGetEventsForSageMakerTransformJobsRule"
# The execution roles: "CreateTrainingJob API: Execution Role Permissions" and "CreateModel
# API: ...", with the KMS actions for encrypted input, an output key and a volume key.
# https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html
LOGS_AND_METRICS = {
    "cloudwatch:PutMetricData",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "logs:CreateLogGroup",
    "logs:DescribeLogStreams",
}
ECR_PULL = {
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchGetImage",
}
TRAINING_ROLE = LOGS_AND_METRICS | {
    "s3:GetObject",
    "s3:PutObject",
    "s3:ListBucket",
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:CreateGrant",
}
MODEL_ROLE = LOGS_AND_METRICS | {"s3:GetObject", "kms:Decrypt"}


def statements(configuration: str, role: str) -> list[dict[str, Any]]:
    """The statements of the training stack's policies attached to a role named ``role``."""
    templates = synthesized(configuration)
    stack = next(name for name in templates.stacks() if name.endswith("-training"))
    found = []
    for policy in templates.resources(stack, "AWS::IAM::Policy").values():
        if any(role in attached["Ref"] for attached in policy["Properties"]["Roles"]):
            found.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return found


def actions(found: list[dict[str, Any]]) -> set[str]:
    granted = set()
    for statement in found:
        action = statement["Action"]
        granted.update([action] if isinstance(action, str) else action)
    return granted


def test_the_state_machine_may_run_and_watch_training_jobs_as_aws_documents():
    found = statements("defaults", "StateMachineRole")
    assert actions(found) >= SYNC_TRAINING
    watched = [json.dumps(s["Resource"]) for s in found if "events:PutRule" in s["Action"]]
    assert [rule for rule in watched if rule.endswith(f'{SYNC_RULE}"]]}}')]
    for passing in [s for s in found if s["Action"] == "iam:PassRole"]:
        assert passing["Condition"] == {
            "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
        }


def test_the_state_machine_may_run_and_watch_transform_jobs_as_aws_documents():
    found = statements("defaults", "StateMachineRole")
    assert actions(found) >= SYNC_TRANSFORM
    (watch,) = [s for s in found if "events:PutRule" in s["Action"] and "Transform" in str(s)]
    assert json.dumps(watch["Resource"]).endswith(f'{SYNC_TRANSFORM_RULE}"]]}}')


@pytest.mark.parametrize(
    ("role", "documented"), [("TrainingRole", TRAINING_ROLE), ("ModelRole", MODEL_ROLE)]
)
@pytest.mark.parametrize(
    "configuration",
    # torchvision and the built-in algorithm on instances with an EBS volume (ml.p3), which
    # takes the volume key: AWS's policy in full, kms:CreateGrant included.
    ["explicit environment, ml.p3, from scratch", "built-in algorithm on ml.p3"],
)
def test_execution_roles_grant_what_aws_documents(role, documented, configuration):
    found = statements(configuration, role)
    assert documented <= actions(found)
    # The PyTorch and built-in images are SageMaker's to pull: no ECR permission for them.
    assert actions(found).isdisjoint(ECR_PULL)


@pytest.mark.parametrize("role", ["TrainingRole", "ModelRole"])
def test_an_image_of_ones_own_may_be_pulled(role):
    assert actions(statements("everything on", role)) >= ECR_PULL


@pytest.mark.parametrize("role", ["TrainingRole", "ModelRole"])
def test_log_permissions_use_the_documented_log_group_arn(role):
    # "arn:...:log-group:NAME:*" for every action but tagging.
    # https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/iam-access-control-overview-cwl.html
    # The model role also logs for the run's Batch Transform job, in a group of its own.
    found = [s for s in statements("defaults", role) if "logs:PutLogEvents" in s["Action"]]
    assert found
    for logs in found:
        resource = json.dumps(logs["Resource"])
        assert resource.count("log-group:") == 1
        assert resource.endswith(':*"]]}')
