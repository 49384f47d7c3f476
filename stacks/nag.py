"""cdk-nag v3 rule packs and the one way this project acknowledges a finding.

Every acknowledgment names one finding on one construct and says why it is
acceptable *there*; `make audit` lists them all for reviewers.
"""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, NagPack, ServerlessChecks
from constructs import IConstruct


def rule_packs(scope: IConstruct) -> list[NagPack]:
    """The packs every stack must pass: AWS Solutions and Serverless.

    Acknowledgments are also written into each resource's CloudFormation metadata
    (``cdk_nag.rules_to_suppress``), so template diffs and `make audit` show them.
    """
    return [
        AwsSolutionsChecks(scope, write_suppressions_to_cloud_formation=True),
        ServerlessChecks(scope),
    ]


def register_rule_packs(app: cdk.App) -> None:
    cdk.Validations.of(app).add_plugins(*rule_packs(app))


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """Accept one finding on ``construct`` with a specific reason.

    On an L2 construct the acknowledgment goes to its CloudFormation resource, so it
    does not spread to children (a queue's policy, a function's event source mapping).
    """
    target = construct.node.default_child or construct
    cdk.Validations.of(target).acknowledge(cdk.Acknowledgment(id=rule, reason=reason))


def skip_checkov(construct: IConstruct, check: str, reason: str) -> None:
    """Skip one checkov check on ``construct``'s CloudFormation resource, saying why there.

    checkov reads ``Metadata.checkov.skip`` of each resource; `make audit` lists them beside
    the cdk-nag acknowledgments.
    """
    resource = construct.node.default_child or construct
    assert isinstance(resource, cdk.CfnResource)
    skips = resource.get_metadata("checkov") or {"skip": []}
    skips["skip"].append({"id": check, "comment": reason})
    resource.add_metadata("checkov", skips)


def object_prefix_finding(bucket_name: str, prefix: str) -> str:
    """The AwsSolutions-IAM5 finding id of access to every object under ``prefix``.

    cdk-nag renders pseudo parameters as ``<AWS::Region>``; ``bucket_name`` is the
    data bucket's name as ``data_bucket_name`` builds it.
    """
    rendered = bucket_name.replace(cdk.Aws.ACCOUNT_ID, "<AWS::AccountId>").replace(
        cdk.Aws.REGION, "<AWS::Region>"
    )
    return f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{rendered}/{prefix}*]"


def arn_finding(stack: cdk.Stack, service: str, resource: str) -> str:
    """The AwsSolutions-IAM5 finding id of a wildcard ARN in ``stack``'s account and Region.

    cdk-nag renders pseudo parameters as ``<AWS::Region>``; a stack with an explicit
    environment has its account and Region written out.
    """
    region = "<AWS::Region>" if cdk.Token.is_unresolved(stack.region) else stack.region
    account = "<AWS::AccountId>" if cdk.Token.is_unresolved(stack.account) else stack.account
    return (
        f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:{service}:{region}:{account}:{resource}]"
    )
