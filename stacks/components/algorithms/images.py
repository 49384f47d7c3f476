"""The algorithm images: the region's built-in Object Detection image (or the configured one),
or SageMaker's PyTorch training and inference images for the torchvision detector.

These images live in SageMaker-owned registries whose account differs by region. The tables
are the ones the SageMaker Python SDK uses (``image_uris.retrieve``), copied verbatim into
``object-detection.json`` and ``pytorch.json`` beside this module from the ``sagemaker-core``
package pinned in constraints.txt (``sagemaker/core/image_uri_config/``), so that synth needs
no SDK; tests/infra/test_dependencies.py checks the copies against that package. An
environment-agnostic stack gets a table as a CloudFormation mapping looked up with
``AWS::Region``; a stack with a known region gets the one URI.
https://docs.aws.amazon.com/sagemaker/latest/dg-ecr-paths/sagemaker-algo-docker-registry-paths.html
https://github.com/aws/deep-learning-containers/blob/master/available_images.md
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

PYTORCH_TABLE = Path(__file__).with_name("pytorch.json")  # sagemaker-core's, copied verbatim
#: The newest PyTorch release the table lists for both training and inference (2.6.0, for
#: Python 3.12): the detector trains on its GPU image and is served by its CPU image, the same
#: framework on both sides. detector/ is written to run on it and on newer releases.
PYTORCH_VERSION = "2.6.0"
PYTORCH_PYTHON = "py312"
#: (table scope, processor) of each image.
PYTORCH_TRAINING = ("training", "gpu")
PYTORCH_INFERENCE = ("inference", "cpu")
_PYTORCH_MAPPING_ID = "PyTorchRegistry"
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


@cache
def pytorch_registry_accounts() -> dict[str, dict[str, str]]:
    """Region -> {"training": account, "inference": account} of the PyTorch images, for the
    regions that have both (the SDK's table)."""
    table = json.loads(PYTORCH_TABLE.read_text(encoding="utf-8"))
    scopes = {}
    for scope, _ in (PYTORCH_TRAINING, PYTORCH_INFERENCE):
        version = table[scope]["versions"][PYTORCH_VERSION]
        if PYTORCH_PYTHON not in version["py_versions"]:
            raise ValueError(f"pytorch.json: no {PYTORCH_PYTHON} {scope} image {PYTORCH_VERSION}")
        scopes[scope] = version["registries"]
    regions = set.intersection(*(set(registries) for registries in scopes.values()))
    return {
        region: {scope: registries[region] for scope, registries in scopes.items()}
        for region in sorted(regions)
    }


def pytorch_repository(scope: str) -> str:
    """``pytorch-training`` or ``pytorch-inference``, as the table names them."""
    table = json.loads(PYTORCH_TABLE.read_text(encoding="utf-8"))
    repository: str = table[scope]["versions"][PYTORCH_VERSION]["repository"]
    return repository


def _registry_account(
    scope: Construct, mapping_id: str, accounts: dict[str, dict[str, str]], key: str, missing: str
) -> str | None:
    """The registry account for ``scope``'s stack's region: a CloudFormation mapping lookup
    (the value itself once the region is known), or None with the error ``missing`` (a
    format string of ``region``) where the table has none."""
    stack = cdk.Stack.of(scope)
    if not cdk.Token.is_unresolved(stack.region) and stack.region not in accounts:
        cdk.Annotations.of(scope).add_error(missing.format(region=stack.region))
        return None
    mapping = stack.node.try_find_child(mapping_id)
    if not isinstance(mapping, cdk.CfnMapping):
        mapping = cdk.CfnMapping(
            stack,
            mapping_id,
            mapping=accounts,
            # A stack with a known region gets the value itself, not the whole table.
            lazy=True,
        )
    return mapping.find_in_map(stack.region, key)


def _image(scope: Construct, account: str, repository: str, tag: str) -> str:
    stack = cdk.Stack.of(scope)
    return f"{account}.dkr.ecr.{stack.region}.{stack.url_suffix}/{repository}:{tag}"


def algorithm_image(scope: Construct, image_uri: str | None) -> str:
    """The built-in algorithm's training and inference image URI for ``scope``'s stack."""
    if image_uri:
        if not _ECR_IMAGE.match(image_uri):
            cdk.Annotations.of(scope).add_error(
                f"training.image_uri: {image_uri!r} is not an Amazon ECR image URI "
                "(<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>)"
            )
        return image_uri
    accounts = {region: {_ACCOUNT_KEY: account} for region, account in registry_accounts().items()}
    account = _registry_account(
        scope,
        _MAPPING_ID,
        accounts,
        _ACCOUNT_KEY,
        f"no built-in {ALGORITHM} image in {{region}}; set training.image_uri",
    )
    return "" if account is None else _image(scope, account, ALGORITHM, VERSION)


def pytorch_image(scope: Construct, image: tuple[str, str]) -> str:
    """The PyTorch image (``PYTORCH_TRAINING`` or ``PYTORCH_INFERENCE``) for ``scope``'s stack,
    tagged as the SDK tags it: ``<version>-<processor>-<python>``."""
    table_scope, processor = image
    account = _registry_account(
        scope,
        _PYTORCH_MAPPING_ID,
        pytorch_registry_accounts(),
        table_scope,
        f"no PyTorch {table_scope} image in {{region}}; set training.algorithm to builtin",
    )
    if account is None:
        return ""
    tag = f"{PYTORCH_VERSION}-{processor}-{PYTORCH_PYTHON}"
    return _image(scope, account, pytorch_repository(table_scope), tag)


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
