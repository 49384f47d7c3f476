"""IAM building blocks the components share: named statements, SageMaker execution roles,
and acknowledging the wildcards that prefix-scoped S3 access leaves.

Each component still writes out its own statements (what it may do to which data is
the part a reviewer reads); these helpers only remove the plumbing around them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct, IConstruct

from stacks.components.algorithms.images import grant_pull
from stacks.nag import acknowledge, arn_finding, object_prefix_finding

#: A statement by its Sid: actions, resources and, optionally, conditions.
Statement = tuple[list[str], list[str]] | tuple[list[str], list[str], dict[str, Any] | None]


def allow(role: iam.IRole, statements: Mapping[str, Statement]) -> IConstruct:
    """Add each statement to ``role``'s default policy; return that policy for acknowledgments."""
    for sid, (actions, resources, *conditions) in statements.items():
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid=sid,
                actions=actions,
                resources=resources,
                conditions=conditions[0] if conditions else None,
            )
        )
    return role.node.find_child("DefaultPolicy")


def tagging_on_create(resource: str) -> iam.PolicyStatement:
    """SageMaker adds the Tags of a Create* request with AddTags, which needs its own grant.
    https://docs.aws.amazon.com/sagemaker/latest/dg/security_iam_id-based-policy-examples.html
    """
    return iam.PolicyStatement(actions=["sagemaker:AddTags"], resources=[resource])


def acknowledge_state_machine_role(
    state_machine: sfn.StateMachine,
    *,
    name: str,
    prefix: str,
    sagemaker: Mapping[str, str],
    function: lambda_.IFunction,
    invokes: str,
) -> None:
    """Acknowledge what every state machine here is granted: its SageMaker resources named
    per run (``sagemaker``: resource type -> what the machine does with it), invoking the
    versions of its one function (CDK's Lambda task), and log delivery and X-Ray on ``*``.

    ``name`` says which state machine ("The training state machine"), ``invokes`` which
    function ("the training data preparation function").
    """
    stack = cdk.Stack.of(state_machine)
    policy = state_machine.role.node.find_child("DefaultPolicy")
    for resource, why in sagemaker.items():
        acknowledge(
            policy,
            arn_finding(stack, "sagemaker", f"{resource}/{prefix}-*"),
            f"{name} {why}; names are generated per run, so access is limited to names "
            f"starting with {prefix}-.",
        )
    cfn_function = function.node.default_child
    assert isinstance(cfn_function, lambda_.CfnFunction)  # a Function's L1 resource
    logical_id = stack.get_logical_id(cfn_function)
    acknowledge(
        policy,
        f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>:*]",
        f"CDK's Lambda task grants invoking any version of {invokes}; it is the one function "
        "the state machine invokes.",
    )
    acknowledge(
        policy,
        "AwsSolutions-IAM5[Resource::*]",
        f"{name} delivers its execution logs and X-Ray traces: logs:*LogDelivery*, "
        "logs:Describe* and xray:Put* have no resource-level permissions.",
    )


def acknowledge_object_prefixes(
    policy: IConstruct, bucket_name: str, reasons: Mapping[str, str]
) -> None:
    """Acknowledge access to every object under each prefix, with that prefix's reason."""
    for prefix, reason in reasons.items():
        acknowledge(policy, object_prefix_finding(bucket_name, prefix), reason)


def job_logging(
    stack: cdk.Stack, log_group_name: str, metrics_namespace: str | None, *, job: str = ""
) -> dict[str, Statement]:
    """What a SageMaker job's role needs to log to ``log_group_name`` and publish metrics:
    ``Write<job>Logs`` and ``Put<job>Metrics`` (``job`` keeps the Sids apart in one policy).

    Acknowledge the log streams with ``acknowledge_job_logs``.
    """
    log_group = stack.format_arn(
        service="logs",
        resource="log-group",
        resource_name=log_group_name,
        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
    )
    return {
        # CloudWatch Logs' documented ARN for permissions on a group and its streams ends in
        # ":*" (the bare ARN is only for tagging actions).
        # https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/iam-access-control-overview-cwl.html
        f"Write{job}Logs": (
            [
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:DescribeLogStreams",
                "logs:PutLogEvents",
            ],
            [f"{log_group}:*"],
        ),
        # CloudWatch metrics have no ARNs; a namespace condition is the narrowest scope.
        f"Put{job}Metrics": (
            ["cloudwatch:PutMetricData"],
            ["*"],
            {"StringEquals": {"cloudwatch:namespace": metrics_namespace}}
            if metrics_namespace
            else None,
        ),
    }


def acknowledge_job_logs(policy: IConstruct, log_group_name: str, runs: str) -> None:
    """Acknowledge ``job_logging``'s log streams, which SageMaker names at run time."""
    acknowledge(
        policy,
        arn_finding(cdk.Stack.of(policy), "logs", f"log-group:{log_group_name}:*"),
        f"SageMaker names the log streams of {runs} in {log_group_name} at run time.",
    )


class SageMakerExecutionRole(Construct):
    """A role SageMaker runs a job or model as, writing to one log group and metrics.

    The caller adds what the work itself needs (data, keys) with ``allow``.

    Attributes:
        role: the role, assumed by SageMaker only.
        policy: its default policy, where the caller's statements and acknowledgments go.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        description: str,
        log_group_name: str,
        metrics_namespace: str | None,
        runs: str,
        image_uri: str | None = None,
    ) -> None:
        """``runs`` names what runs as the role, for the acknowledgments ("training jobs");
        ``image_uri``, an image of one's own in ECR that it may pull (None: SageMaker's)."""
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        # "Default": the role keeps the logical id it would have outside this construct.
        self.role = iam.Role(
            self,
            "Default",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=description,
        )
        self.policy = allow(self.role, job_logging(stack, log_group_name, metrics_namespace))
        acknowledge_job_logs(self.policy, log_group_name, runs)
        registry_login = grant_pull(self.role, image_uri)
        acknowledge(
            self.policy,
            "AwsSolutions-IAM5[Resource::*]",
            f"The {runs} publish CloudWatch metrics; cloudwatch:PutMetricData has no "
            "resource-level permissions"
            + (", so the statement is limited by namespace." if metrics_namespace else ".")
            + registry_login,
        )
