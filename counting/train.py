"""``counting train start``: start a training run on a labeled manifest already in S3.

The run is the deployed state machine's (``StateMachineArn`` output of the training
stack): it checks the manifest, trains, and deploys the model if it passes the quality
gate. Prints the execution's ARN; follow it in the console or with
``aws stepfunctions describe-execution``.
"""

# boto3 is imported inside the handler: every command group is imported to build the
# parser, and `counting --help` or another group's command should not pay for it.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import json
import re
import uuid
from datetime import UTC, datetime

from counting_core.errors import InputError
from counting_core.manifest import check_label_attribute_name, is_s3_object_uri
from counting_core.training import TrainingRequest

STATE_MACHINE_ARN = re.compile(
    r"arn:aws[a-z-]*:states:(?P<region>[a-z0-9-]+):\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}"
)


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
        "--state-machine-arn", required=True, metavar="ARN", help="the StateMachineArn output"
    )
    start.add_argument(
        "--label-attribute", metavar="NAME", help="the manifest's label attribute (default: found)"
    )
    start.add_argument("--region", help="AWS Region (default: the state machine's)")
    start.set_defaults(handler=_start)


def execution_name(now: datetime) -> str:
    """Unique and readable: ``cli-<UTC time>-<8 hex digits>`` (names cannot be reused)."""
    return f"cli-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def _start(args: argparse.Namespace) -> int:
    if not is_s3_object_uri(args.manifest):
        raise InputError(f"--manifest: {args.manifest!r} is not an s3://bucket/key URI")
    match = STATE_MACHINE_ARN.fullmatch(args.state_machine_arn)
    if match is None:
        raise InputError(
            f"--state-machine-arn: {args.state_machine_arn!r} is not a state machine ARN"
        )
    if args.label_attribute is not None:
        check_label_attribute_name(args.label_attribute)
    request = TrainingRequest(manifest_uri=args.manifest, label_attribute=args.label_attribute)
    arn = start_execution(
        args.state_machine_arn, request.payload(), region=args.region or match["region"]
    )
    print(json.dumps({"executionArn": arn}, indent=2))
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
