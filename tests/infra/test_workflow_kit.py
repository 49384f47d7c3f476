"""The state machines' shared kit (stacks/components/workflow), each piece in a stack of its own
with a one-state machine around it: run reports, and the Batch Transform task."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk.assertions import Template

from stacks.components.workflow.batch_transform import BatchTransform
from stacks.components.workflow.notify import RunNotifications
from tests.infra.synth import component_stack
from tests.stepfunctions.template import Templates

pytestmark = pytest.mark.synth  # every test here synthesizes a template

# tests/stepfunctions/template.py's stand-ins: account, Region, and logical ids as names.
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:{}"
LIST_BUCKETS = "arn:aws:states:::aws-sdk:s3:listBuckets"
# Retried 3 times, after at most 2, 4 and 8 s (full jitter): retry_policies.NOTIFICATION.
NOTIFICATION_RETRY = {
    "ErrorEquals": ["States.TaskFailed"],
    "IntervalSeconds": 2,
    "MaxAttempts": 3,
    "BackoffRate": 2,
    "JitterStrategy": "FULL",
}


def definition(stack: cdk.Stack, start: sfn.IChainable) -> dict:
    """The ASL of a state machine starting at ``start``, as deployed in ``stack``."""
    sfn.StateMachine(stack, "Machine", definition_body=sfn.DefinitionBody.from_chainable(start))
    return Templates({"Component": Template.from_stack(stack).to_json()}).definition("Component")


def work(stack: cdk.Stack) -> sfn.CustomState:
    return sfn.CustomState(
        stack, "Work", state_json={"Type": "Task", "Resource": LIST_BUCKETS, "Parameters": {}}
    )


def notifications(stack: cdk.Stack, topic: sns.ITopic) -> RunNotifications:
    return RunNotifications(
        stack, "Notifications", prefix="object-counting-dev", topic=topic, stopped_subject="stop"
    )


def test_a_caught_failure_is_reported_sent_then_fails_the_run():
    stack, _ = component_stack()
    task = work(stack)
    topic = sns.Topic(stack, "Topic")
    notifications(stack, topic).catch(task)

    states = definition(stack, task)["States"]

    assert states["Work"]["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "WorkFailed"}
    ]
    assert states["WorkFailed"] == {
        "Type": "Pass",
        "Comment": "What is reported when Work stops the run",
        "Parameters": {
            "outcome": "failed",
            "state": "Work",
            "error": "WorkFailed",
            "cause.$": "States.Format('{}: {}', $.failure.Error, $.failure.Cause)",
            "execution.$": "$$.Execution.Id",
            "console.$": "States.Format('https://us-east-1.console.aws.amazon.com/states/home"
            "?region=us-east-1#/v2/executions/details/{}', $$.Execution.Id)",
            "request.$": "$$.Execution.Input",
        },
        "Next": "NotifyStopped",
    }
    assert states["NotifyStopped"] == {
        "Type": "Task",
        "Resource": "arn:aws:states:::sns:publish",
        "Parameters": {
            "TopicArn": TOPIC_ARN.format(stack.get_logical_id(topic.node.default_child)),
            "Message.$": "States.JsonToString($)",
            "Subject": "object-counting-dev: stop",
        },
        "ResultPath": None,
        "Retry": [NOTIFICATION_RETRY],
        # A report that cannot be sent still fails the run with its error and cause.
        "Catch": [
            {
                "ErrorEquals": ["States.ALL"],
                "ResultPath": "$.notificationFailure",
                "Next": "RunStopped",
            }
        ],
        "Next": "RunStopped",
    }
    assert states["RunStopped"] == {"Type": "Fail", "ErrorPath": "$.error", "CausePath": "$.cause"}


def test_a_task_caught_twice_has_one_report():
    stack, _ = component_stack()
    task = work(stack)
    runs = notifications(stack, sns.Topic(stack, "Topic"))

    first = runs.catch(task, errors=("DataNotTrainable",))
    again = runs.catch(task)

    assert again is first
    assert definition(stack, task)["States"]["Work"]["Catch"] == [
        {"ErrorEquals": ["DataNotTrainable"], "ResultPath": "$.failure", "Next": "WorkFailed"},
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "WorkFailed"},
    ]


@pytest.mark.parametrize("encrypted", [True, False])
def test_publishing_to_an_encrypted_topic_may_use_its_key_only(encrypted):
    stack, _ = component_stack()
    key = kms.Key(stack, "Key")
    topic = sns.Topic(stack, "Topic", master_key=key if encrypted else None)
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("states.amazonaws.com"))

    notifications(stack, topic).grant_publish(role)

    policies = Template.from_stack(stack).find_resources("AWS::IAM::Policy")
    statements = [
        statement
        for policy in policies.values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    key_id = stack.get_logical_id(key.node.default_child)
    assert statements == (
        [
            {
                "Sid": "EncryptNotifications",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],  # CDK sorts them
                "Resource": {"Fn::GetAtt": [key_id, "Arn"]},
            }
        ]
        if encrypted
        else []
    )


def test_a_batch_transform_runs_the_named_model_over_the_manifest_and_waits():
    stack, _ = component_stack()
    key = kms.Key(stack, "Key")
    transform = BatchTransform(
        stack,
        "Transform",
        state_name="Count",
        job_name_prefix="object-counting-dev-bulk-",
        job_name_path="$.run.job",
        model_name_path="$.run.model",
        manifest_uri_path="$.run.manifest",
        output_uri_path="$.run.output",
        instance_type="ml.m5.xlarge",
        key=key,
        timeout=cdk.Duration.hours(2),
        result_path="$.transform",
        tags=[{"Key": "run", "Value": "test"}],
    )

    state = definition(stack, transform.state)["States"]["Count"]

    key_arn = (
        f"arn:aws:kms:us-east-1:123456789012:key/{stack.get_logical_id(key.node.default_child)}"
    )
    assert state["Resource"] == "arn:aws:states:::sagemaker:createTransformJob.sync"
    # Everything a run names comes from its state; the rest of the request is the training
    # stack's test (tests/infra/test_training_stack.py), where the evaluation runs it.
    parameters = state["Parameters"]
    assert {name: value for name, value in parameters.items() if name.endswith(".$")} == {
        "TransformJobName.$": "$.run.job",
        "ModelName.$": "$.run.model",
    }
    assert parameters["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri.$"] == (
        "$.run.manifest"
    )
    assert parameters["TransformOutput"]["S3OutputPath.$"] == "$.run.output"
    # The results and the instance's volume are encrypted with the key given.
    assert parameters["TransformOutput"]["KmsKeyId"] == key_arn
    assert parameters["TransformResources"] == {
        "InstanceType": "ml.m5.xlarge",
        "InstanceCount": 1,
        "VolumeKmsKeyId": key_arn,
    }
    assert parameters["Tags"] == [{"Key": "run", "Value": "test"}]
    assert state["TimeoutSeconds"] == 7200  # 2 hours
    assert state["ResultPath"] == "$.transform"
    assert state["Retry"] == [
        # SageMaker's API errors: after at most 1, 2 and 4 minutes (full jitter).
        {
            "ErrorEquals": ["SageMaker.AmazonSageMakerException"],
            "IntervalSeconds": 60,
            "MaxAttempts": 3,
            "BackoffRate": 2,
            "JitterStrategy": "FULL",
        },
        # No capacity: every 5 minutes, 5 times (25 minutes).
        {
            "ErrorEquals": ["SageMaker.ResourceLimitExceededException"],
            "IntervalSeconds": 300,
            "MaxAttempts": 5,
            "BackoffRate": 1,
            "JitterStrategy": "NONE",
        },
    ]
    assert [statement.sid for statement in transform.statements] == [
        "RunTransformJobs",
        "WatchTransformJobs",
    ]
