"""The algorithm image: the region's built-in Object Detection image, or the configured one.

The built-in image lives in a SageMaker-owned registry whose account differs by region.
The table is the one the SageMaker Python SDK uses (``image_uris.retrieve``), copied
verbatim into ``object-detection.json`` beside this module from the ``sagemaker-core``
package pinned in constraints.txt (``sagemaker/core/image_uri_config/``), so that synth needs
no SDK; tests/infra/test_image_table.py checks the copy against that package. An
environment-agnostic stack gets the table as a CloudFormation mapping looked up with
``AWS::Region``; a stack with a known region gets the one URI.
https://docs.aws.amazon.com/sagemaker/latest/dg-ecr-paths/sagemaker-algo-docker-registry-paths.html
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct

ALGORITHM = "object-detection"
VERSION = "1"
TABLE = Path(__file__).with_name(f"{ALGORITHM}.json")  # sagemaker-core's, copied verbatim
_MAPPING_ID = "ObjectDetectionRegistry"
_ACCOUNT_KEY = "account"
# <account>.dkr.ecr.<region>.<domain>/<repository>[:tag|@digest]: images SageMaker can pull.
_ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.[a-z0-9.]+/"
    r"(?P<repository>[a-z0-9._/-]+?)(?::[\w.-]+|@sha256:[0-9a-f]{64})?$"
)


@cache
def registry_accounts() -> dict[str, str]:
    """Region -> account of the built-in image's registry, from the SageMaker SDK's table."""
    table = json.loads(TABLE.read_text(encoding="utf-8"))
    return dict(table["versions"][VERSION]["registries"])


def algorithm_image(scope: Construct, image_uri: str | None) -> str:
    """The training and inference image URI for ``scope``'s stack."""
    if image_uri:
        if not _ECR_IMAGE.match(image_uri):
            cdk.Annotations.of(scope).add_error(
                f"training.image_uri: {image_uri!r} is not an Amazon ECR image URI "
                "(<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>)"
            )
        return image_uri
    stack = cdk.Stack.of(scope)
    accounts = registry_accounts()
    if not cdk.Token.is_unresolved(stack.region) and stack.region not in accounts:
        cdk.Annotations.of(scope).add_error(
            f"no built-in {ALGORITHM} image in {stack.region}; set training.image_uri"
        )
        return ""
    mapping = stack.node.try_find_child(_MAPPING_ID)
    if not isinstance(mapping, cdk.CfnMapping):
        mapping = cdk.CfnMapping(
            stack,
            _MAPPING_ID,
            mapping={region: {_ACCOUNT_KEY: account} for region, account in accounts.items()},
            # A stack with a known region gets the value itself, not the whole table.
            lazy=True,
        )
    account = mapping.find_in_map(stack.region, _ACCOUNT_KEY)
    return f"{account}.dkr.ecr.{stack.region}.{stack.url_suffix}/{ALGORITHM}:{VERSION}"


def grant_pull(role: iam.IRole, image_uri: str | None) -> str:
    """Let SageMaker pull a configured image from its ECR repository with ``role``.

    The built-in image needs no permission: SageMaker pulls it from its own registry.
    Returns what an acknowledgment of the registry login's ``Resource::*`` should add
    (nothing when no login was granted).
    https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html
    """
    match = _ECR_IMAGE.match(image_uri or "")
    if match is None:
        return ""
    stack = cdk.Stack.of(role)
    repository = stack.format_arn(
        service="ecr",
        account=match["account"],
        region=match["region"],
        resource="repository",
        resource_name=match["repository"],
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="PullTheConfiguredImage",
            # AWS's execution role policy: the three image actions on the repository.
            actions=[
                "ecr:BatchCheckLayerAvailability",
                "ecr:BatchGetImage",
                "ecr:GetDownloadUrlForLayer",
            ],
            resources=[repository],
        )
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="LogInToTheRegistry", actions=["ecr:GetAuthorizationToken"], resources=["*"]
        )
    )
    return (
        " It also logs in to ECR to pull the configured image: ecr:GetAuthorizationToken "
        "has no resource-level permissions."
    )
