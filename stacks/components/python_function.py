"""A Python Lambda function packaged without Docker, logging and tracing by default.

Each function's code asset is its own folder under ``lambdas/`` plus the modules of the shared
packages (``SHARED_PACKAGES``) that its code imports (directly or through each other), copied into
``.build/lambdas/<name>-<content hash>/`` at synth time. The asset therefore changes only when
that function's code or a module it uses changes (never for a CLI change), and every synth of
the same sources gives the same asset hash.
"""

from __future__ import annotations

import ast
import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from counting_core.contracts import metrics
from counting_core.contracts.environment import FunctionEnvironment
from stacks.nag import acknowledge, skip_checkov
from stacks.pins import IMAGING, IMAGING_LICENCES, pinned_version

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = ROOT / ".build"

# Powertools' public layer is published for python3.13; the runtime follows it.
RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.X86_64
# Public SSM parameter naming the layer ARN of one Powertools release (the pinned one, which
# the handler tests run against), resolved by CloudFormation at deploy time (no lookup at synth).
# https://docs.aws.amazon.com/powertools/python/latest/getting-started/install/
POWERTOOLS_VERSION = pinned_version("aws-lambda-powertools")
POWERTOOLS_LAYER_PARAMETER = (
    f"/aws/service/powertools/python/x86_64/python3.13/{POWERTOOLS_VERSION}"
)


# What Lambda does with a VPC function's role: the EC2 actions of AWS's managed
# AWSLambdaVPCAccessExecutionRole, without its logs:* on every log group.
# https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSLambdaVPCAccessExecutionRole.html
NETWORK_INTERFACE_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)


# The shared packages a handler may import: each function's asset carries only the modules of
# these that its code reaches, so a change to one subject's code redeploys only its users.
SHARED_PACKAGES = ("counting_core", "adapters")


def _copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tests"))


def _module_file(dotted: str) -> Path | None:
    """The file of a shared module or package (``counting_core.counts.results``), if one."""
    path = ROOT.joinpath(*dotted.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None  # a name a module defines, not a module


def _shared_imports(path: Path) -> set[str]:
    """Dotted names of the shared modules ``path`` may import (``from counting_core.imaging import
    images`` names both ``counting_core.imaging`` and ``counting_core.imaging.images``;
    function-level imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.split(".")[0] in SHARED_PACKAGES}


def shared_modules(handler_folder: Path) -> list[Path]:
    """The shared modules' files a handler folder needs, imports followed transitively, with
    the ``__init__.py`` of every package above them."""
    pending = {name for path in handler_folder.rglob("*.py") for name in _shared_imports(path)}
    seen: set[str] = set()
    files: set[Path] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        module = _module_file(name)
        if module is None:
            continue
        files.add(module)
        parts = name.split(".")
        pending |= {".".join(parts[:depth]) for depth in range(1, len(parts))}
        pending |= _shared_imports(module)
    return sorted(files)


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def package_code(name: str) -> Path:
    """Stage ``lambdas/<name>`` and the shared modules it uses into one folder.

    The folder is named after its content and appears by an atomic rename, so synths
    running side by side (tests, ``make synth``) never see each other's half-copied code.
    """
    parent = BUILD_DIR / "lambdas"
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=parent))
    _copy_tree(ROOT / "lambdas" / name, staging / "lambdas" / name)
    for module in shared_modules(ROOT / "lambdas" / name):
        target_file = staging / module.relative_to(ROOT)
        target_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(module, target_file)
    shutil.copy2(ROOT / "lambdas" / "__init__.py", staging / "lambdas" / "__init__.py")
    target = parent / f"{name}-{_digest(staging)}"
    try:
        staging.rename(target)
    except OSError:  # the same content is already there
        shutil.rmtree(staging)
    return target


def install_wheels(*requirements: str, licences: tuple[Path, ...] = ()) -> Path:
    """pip-install pinned requirements for the Lambda platform (manylinux, x86_64).

    Wheels only, no compiled .pyc (their timestamps would change the asset hash), into
    ``.build/layers/<requirements>/python``, with ``licences`` copied to
    ``python/licenses/``; reused when already there. So the first synth of a clone (or after
    a version bump) asks the package index for the wheels: the Lambda's Python and platform
    differ from this machine's, so no installed copy fits.
    """
    target = BUILD_DIR / "layers" / "+".join(r.replace("==", "-") for r in requirements)
    if not (target / "python").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        # This interpreter's pip, fixed options and a pin of stacks/pins.py; no shell.
        subprocess.run(  # noqa: S603
            [
                sys.executable, "-m", "pip", "install", "--quiet", "--no-compile",
                "--only-binary=:all:", "--implementation", "cp",
                "--python-version", RUNTIME.name.removeprefix("python"),
                "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64",
                "--target", str(staging / "python"), *requirements,
            ],
            check=True,
        )  # fmt: skip
        # A wheel's data files (its .data/data scheme) land at the top of --target, where no
        # import reaches them: the typeface's wheel puts a second 16 MB copy of its font there.
        for path in (staging / "python").iterdir():
            if path.is_file() and path.suffix not in {".py", ".pth"}:
                path.unlink()
        for licence in licences:
            (staging / "python" / "licenses").mkdir(exist_ok=True)
            shutil.copy2(licence, staging / "python" / "licenses" / licence.name)
        try:
            staging.rename(target)
        except OSError:  # another synth installed it meanwhile
            shutil.rmtree(staging)
    return target


def imaging_layer(scope: Construct) -> lambda_.LayerVersion:
    """Pillow and the typeface the pictures are drawn with, for the functions that read,
    draw or plot images (one layer: a function may have five)."""
    return lambda_.LayerVersion(
        scope,
        "Imaging",
        code=lambda_.Code.from_asset(str(install_wheels(*IMAGING, licences=IMAGING_LICENCES))),
        compatible_runtimes=[RUNTIME],
        compatible_architectures=[ARCHITECTURE],
        description=f"{' and '.join(IMAGING)} for {RUNTIME.name} on {ARCHITECTURE.name}",
    )


def powertools_layer(scope: Construct) -> lambda_.ILayerVersion:
    """The Powertools public layer, one per stack (it brings pydantic too)."""
    stack = cdk.Stack.of(scope)
    existing = stack.node.try_find_child("PowertoolsLayer")
    if existing is not None:
        # The layer an earlier call imported below: a jsii interface proxy, which no
        # isinstance check can narrow from IConstruct.
        return existing  # type: ignore[return-value]
    arn = ssm.StringParameter.value_for_string_parameter(stack, POWERTOOLS_LAYER_PARAMETER)
    return lambda_.LayerVersion.from_layer_version_arn(stack, "PowertoolsLayer", arn)


@dataclass(frozen=True)
class Network:
    """Where a function that must reach something inside a VPC runs: its subnets (with a way
    out to the AWS APIs it calls) and its security group."""

    vpc: ec2.IVpc
    subnets: list[ec2.ISubnet]
    security_group: ec2.ISecurityGroup


class HandlerFunction(Construct):
    """One handler under ``lambdas/<name>/handler.py`` with its encrypted log group.

    Its environment is its ``contract`` (``counting_core.contracts.<name>.Environment``) with
    ``environment``'s values (by field name) and ``service`` as the Powertools service name.
    With ``network`` it runs in that VPC, its role allowed to manage the network interfaces
    it runs through (``NETWORK_INTERFACE_ACTIONS``).

    Attributes:
        function: the Lambda function (X-Ray active, environment encrypted with ``key``).
        role: its execution role; grant it what the handler needs.
        log_group: its log group, KMS-encrypted, with a set retention.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        description: str,
        key: kms.IKey,
        service: str,
        contract: type[FunctionEnvironment],
        environment: Mapping[str, object],
        timeout: cdk.Duration,
        memory_size: int = 256,
        ephemeral_storage: cdk.Size | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
        layers: list[lambda_.ILayerVersion] | None = None,
        reserved_concurrency: int | None = None,
        network: Network | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            encryption_key=key,
            retention=log_retention,
        )
        # Its own role with write access to its own log group, instead of the managed
        # AWSLambdaBasicExecutionRole (which allows writing to every log group).
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Runs the {name} Lambda function",
        )
        self.log_group.grant_write(self.role)
        self.function = lambda_.Function(
            self,
            "Function",
            role=self.role,
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=f"lambdas.{name}.handler.main",
            code=lambda_.Code.from_asset(str(package_code(name))),
            timeout=timeout,
            memory_size=memory_size,
            ephemeral_storage_size=ephemeral_storage,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            # Tokens (names known at deploy time) pass through; every other value is checked.
            environment=contract.variables(
                {"service": service, "metrics_namespace": metrics.NAMESPACE, **environment},
                deferred=cdk.Token.is_unresolved,
            ),
            environment_encryption=key,
            layers=[powertools_layer(self), *(layers or [])],
            reserved_concurrent_executions=reserved_concurrency,
            vpc=None if network is None else network.vpc,
            vpc_subnets=None if network is None else ec2.SubnetSelection(subnets=network.subnets),
            security_groups=None if network is None else [network.security_group],
        )
        if network is not None:
            self._manage_network_interfaces(name)
        acknowledge(
            self.role.node.find_child("DefaultPolicy"),
            "AwsSolutions-IAM5[Resource::*]",
            f"X-Ray tracing of the {name} function: xray:PutTraceSegments and "
            "xray:PutTelemetryRecords support no resource-level permissions.",
        )
        for rule in ("AwsSolutions-L1", "Serverless-LambdaLatestVersion"):
            acknowledge(
                self.function,
                rule,
                f"The {name} function stays on {RUNTIME.name} because the Powertools public "
                f"layer it loads ({POWERTOOLS_VERSION}) is published for that runtime.",
            )

    def _manage_network_interfaces(self, name: str) -> None:
        """Lambda creates the function's network interfaces with its role, before the first
        invocation: the policy must exist before the function."""
        policy = iam.Policy(
            self,
            "NetworkInterfaces",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(actions=list(NETWORK_INTERFACE_ACTIONS), resources=["*"])
            ],
        )
        self.function.node.add_dependency(policy)
        reason = (
            f"The {name} function runs in a VPC: Lambda creates, describes and deletes its "
            "network interfaces with the function's role, on interfaces not made yet "
            "(DescribeNetworkInterfaces takes no resource at all), as AWS's own "
            "AWSLambdaVPCAccessExecutionRole allows them."
        )
        acknowledge(policy, "AwsSolutions-IAM5[Resource::*]", reason)
        skip_checkov(policy, "CKV_AWS_111", reason)
