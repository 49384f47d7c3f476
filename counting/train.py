"""``counting train start | status | wait | rollback``: training runs and the model they deployed.

A run is the deployed training state machine's: it checks the manifest, trains, and
deploys the model if it passes its gates. ``start`` prints the execution's ARN, which
``status`` and ``wait`` follow. ``rollback`` puts the endpoint back on the deployment before
the active one, from the history Parameter Store keeps of the active-model record.

Every command finds the stage from the data bucket's name (``counting_core.stage_names``),
so ``--state-machine-arn`` is needed only for a bucket named otherwise.
"""

# boto3 is imported inside the handlers: every command group is imported to build the
# parser, and `counting --help` or another group's command should not pay for it.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from counting.options import add_bucket_option, bucket_name, stage_of
from counting_core import stage_names
from counting_core.datasets.manifest import (
    check_label_attribute_name,
    is_s3_object_uri,
    split_s3_uri,
)
from counting_core.errors import InputError, describe_validation_error
from counting_core.models.model_record import ActiveModel
from counting_core.models.training import TrainingRequest

STATE_MACHINE_ARN = re.compile(
    r"arn:aws[a-z-]*:states:(?P<region>[a-z0-9-]+):\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}"
)
EXECUTION_ARN = re.compile(
    r"arn:aws[a-z-]*:states:(?P<region>[a-z0-9-]+):\d{12}:execution:[A-Za-z0-9_-]{1,80}:"
    r"[A-Za-z0-9_-]{1,80}"
)
#: A run takes hours (training) and an endpoint update minutes: checking twice a minute
#: costs nothing and reports soon enough.
POLL_SECONDS = 30
#: A serverless endpoint update takes minutes; past this, something is wrong.
ENDPOINT_UPDATE_SECONDS = 30 * 60
# DescribeEndpoint's statuses on the way to InService.
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeEndpoint.html
_ENDPOINT_IN_PROGRESS = ("Creating", "Updating", "SystemUpdating", "RollingBack")
EXIT_RUN_DID_NOT_SUCCEED = 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser("train", help="train and deploy a model with the state machine")
    commands = group.add_subparsers(dest="train_command", required=True)
    start = commands.add_parser(
        "start",
        help="start a training run on a labeled manifest in S3",
        description=(
            "Start the training state machine on a labeled manifest (an augmented manifest under "
            "training/requests/ or labeling/output/ of the data bucket). Prints JSON with "
            "the execution's ARN."
        ),
    )
    start.add_argument(
        "--manifest", required=True, metavar="s3://BUCKET/KEY", help="the labeled manifest"
    )
    start.add_argument(
        "--state-machine-arn",
        metavar="ARN",
        help="the StateMachineArn output (default: the one named after the data bucket)",
    )
    start.add_argument(
        "--label-attribute", metavar="NAME", help="the manifest's label attribute (default: found)"
    )
    start.add_argument("--region", help="AWS Region (default: the state machine's)")
    start.set_defaults(handler=_start)

    for name, handler, summary in (
        ("status", _status, "print a run's status (and, once it stopped, why)"),
        ("wait", _wait, "wait until a run stops; exit 0 if it succeeded, 1 if not"),
    ):
        command = commands.add_parser(name, help=summary, description=summary)
        command.add_argument(
            "--execution-arn", required=True, metavar="ARN", help="what `train start` printed"
        )
        command.set_defaults(handler=handler)

    rollback = commands.add_parser(
        "rollback",
        help="put the endpoint back on the deployment before the active one",
        description=(
            "Find the deployment before the active one in the active-model record's history "
            "(Parameter Store keeps its last 100 versions), update the endpoint to its endpoint "
            "config, wait until the endpoint serves it, then restore its record, which the "
            "counter reads within a minute. Prints JSON with both configs."
        ),
    )
    add_bucket_option(rollback)
    rollback.add_argument(
        "--to",
        metavar="ENDPOINT_CONFIG",
        help="an earlier deployment's endpoint config (default: the one before the active one)",
    )
    rollback.set_defaults(handler=_rollback)


def execution_name(now: datetime) -> str:
    """Unique and readable: ``cli-<UTC time>-<8 hex digits>`` (names cannot be reused)."""
    return f"cli-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def _start(args: argparse.Namespace) -> int:
    if not is_s3_object_uri(args.manifest):
        raise InputError(f"--manifest: {args.manifest!r} is not an s3://bucket/key URI")
    if args.state_machine_arn is None:
        bucket, _ = split_s3_uri(args.manifest) or ("", "")
        stage = stage_of(bucket, option="--manifest")
        arn = stage.state_machine_arn(stage_names.training_state_machine(stage.prefix))
    else:
        arn = args.state_machine_arn
    match = STATE_MACHINE_ARN.fullmatch(arn)
    if match is None:
        raise InputError(f"--state-machine-arn: {arn!r} is not a state machine ARN")
    if args.label_attribute is not None:
        check_label_attribute_name(args.label_attribute)
    request = TrainingRequest(manifest_uri=args.manifest, label_attribute=args.label_attribute)
    execution = start_execution(arn, request.payload(), region=args.region or match["region"])
    print(json.dumps({"executionArn": execution}, indent=2))
    return 0


def start_execution(state_machine_arn: str, request: dict[str, str], *, region: str) -> str:
    from counting import aws

    with aws.reported(state_machine_arn, doing=f"start {state_machine_arn}"):
        response = aws.client("stepfunctions", region).start_execution(
            stateMachineArn=state_machine_arn,
            name=execution_name(datetime.now(UTC)),
            input=json.dumps(request),
        )
    execution_arn: str = response["executionArn"]
    return execution_arn


def _status(args: argparse.Namespace) -> int:
    print(json.dumps(_describe_execution(args.execution_arn), indent=2))
    return 0


def _wait(args: argparse.Namespace) -> int:
    execution = _describe_execution(args.execution_arn)
    while execution["status"] == "RUNNING":
        time.sleep(POLL_SECONDS)
        execution = _describe_execution(args.execution_arn)
    print(json.dumps(execution, indent=2))
    return 0 if execution["status"] == "SUCCEEDED" else EXIT_RUN_DID_NOT_SUCCEED


def _describe_execution(execution_arn: str) -> dict[str, Any]:
    """DescribeExecution's status, times and, for a run that stopped, its error and cause."""
    from counting import aws

    match = EXECUTION_ARN.fullmatch(execution_arn)
    if match is None:
        raise InputError(f"--execution-arn: {execution_arn!r} is not an execution ARN")
    with aws.reported(execution_arn, doing=f"describe {execution_arn}"):
        described = aws.client("stepfunctions", match["region"]).describe_execution(
            executionArn=execution_arn
        )
    fields = ("status", "startDate", "stopDate", "error", "cause")
    return {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name in fields
        if (value := described.get(name)) is not None
    }


def _rollback(args: argparse.Namespace) -> int:
    from counting import aws

    # Rollback finds the record by the bucket's name alone: no other option to point to.
    stage = stage_of(bucket_name(args.bucket), option="--bucket", otherwise=None)
    parameter = stage_names.active_model_parameter(stage.prefix)
    ssm = aws.client("ssm", stage.region)
    with aws.reported(parameter, doing=f"read {parameter}"):
        versions = _history(ssm, parameter)
    active, earlier = deployment_to_restore(versions, args.to, parameter)
    target = earlier.record.endpoint_config_name

    sagemaker = aws.client("sagemaker", stage.region)
    endpoint = earlier.record.endpoint_name
    with aws.reported(endpoint, doing=f"update endpoint {endpoint}"):
        sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName=target)
        print(f"counting: updating {endpoint} to {target}; this takes minutes", file=sys.stderr)
        _wait_in_service(sagemaker, endpoint)
    # Only now: the counter must not name the earlier model while the endpoint still serves
    # the active one. The record goes back as it was written for that deployment.
    with aws.reported(parameter, doing=f"write {parameter}"):
        ssm.put_parameter(Name=parameter, Value=earlier.text, Overwrite=True)
    print(
        json.dumps(
            {
                "endpoint": endpoint,
                "from": active.record.endpoint_config_name,
                "to": target,
                "model": earlier.record.model_name,
                "restored_version": earlier.version,
            },
            indent=2,
        )
    )
    return 0


def _history(ssm: Any, parameter: str) -> list[dict[str, Any]]:
    """Every version Parameter Store keeps; none before the first deployment wrote one."""
    from botocore.exceptions import ClientError

    try:
        pages = ssm.get_paginator("get_parameter_history").paginate(Name=parameter)
        return [version for page in pages for version in page["Parameters"]]
    except ClientError as error:
        # GetParameterHistory's documented error for a parameter that does not exist.
        # https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetParameterHistory.html
        if error.response.get("Error", {}).get("Code") == "ParameterNotFound":
            return []
        raise


@dataclass(frozen=True)
class Deployment:
    """One version of the active-model record: as written, and read."""

    version: int
    text: str
    record: ActiveModel


def deployment_to_restore(
    versions: list[dict[str, Any]], to: str | None, parameter: str
) -> tuple[Deployment, Deployment]:
    """(the active deployment, the earlier one to restore) from GetParameterHistory's versions.

    The history's order is not documented, so versions are sorted by their number. The
    earlier deployment is the newest version naming another endpoint config (a record
    written twice for one deployment is not a rollback), or the newest naming ``to``.
    """
    if not versions:
        raise InputError(f"{parameter} holds no record: nothing was deployed yet")
    deployments = [_deployment(version, parameter) for version in versions]
    deployments.sort(key=lambda deployment: deployment.version)
    active = deployments[-1].record.endpoint_config_name
    if to == active:
        raise InputError(f"--to: {to} is the active deployment")

    def restores(deployment: Deployment) -> bool:
        # Another deployment: a record written twice for the active one is not a rollback.
        config = deployment.record.endpoint_config_name
        return config != active and to in (None, config)

    earlier = next((each for each in reversed(deployments) if restores(each)), None)
    if earlier is None:
        kept = f"the {len(deployments)} version(s) Parameter Store keeps of {parameter}"
        raise InputError(
            f"--to: {to} is not in {kept}" if to else f"no earlier deployment in {kept}"
        )
    return deployments[-1], earlier


def _deployment(version: dict[str, Any], parameter: str) -> Deployment:
    try:
        record = ActiveModel.model_validate_json(version["Value"])
    except ValidationError as error:
        problems = "; ".join(describe_validation_error(error, whole="record"))
        raise InputError(f"{parameter} version {version['Version']}: {problems}") from None
    return Deployment(int(version["Version"]), version["Value"], record)


def _wait_in_service(sagemaker: Any, endpoint: str) -> None:
    from counting import AwsFailure

    waited = 0
    while True:
        described = sagemaker.describe_endpoint(EndpointName=endpoint)
        status = described["EndpointStatus"]
        if status == "InService":
            return
        if status not in _ENDPOINT_IN_PROGRESS or waited >= ENDPOINT_UPDATE_SECONDS:
            reason = described.get("FailureReason", "")
            raise AwsFailure(
                f"endpoint {endpoint} is {status} after {waited} s, not InService"
                + (f": {reason}" if reason else "")
                + "; the record was left as it was"
            )
        time.sleep(POLL_SECONDS)
        waited += POLL_SECONDS
