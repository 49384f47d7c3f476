"""``counting bulk start``: count every image under a prefix of the data bucket.

The run is the deployed bulk-counting state machine's (``StateMachineArn`` output of the
bulk-counting stack): it skips images the active model counted already, counts the rest
on SageMaker Batch Transform, and writes a summary to ``bulk/<run>/summary.json`` and to
the alerts topic. Prints the execution's ARN.
"""

from __future__ import annotations

import argparse
import json

from counting.options import stage_of
from counting.train import STATE_MACHINE_ARN, start_execution
from counting_core import stage_names
from counting_core.datasets.manifest import split_s3_uri
from counting_core.errors import InputError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser("bulk", help="count images already in S3, in bulk")
    commands = group.add_subparsers(dest="bulk_command", required=True)
    start = commands.add_parser(
        "start",
        help="count every image under a prefix of the data bucket",
        description=(
            "Start the bulk-counting state machine on every image under a prefix of the data "
            "bucket (one of bulk.source_prefixes, archive/ by default). Images the active "
            "model counted already are skipped. Prints JSON with the execution's ARN."
        ),
    )
    start.add_argument(
        "--prefix", required=True, metavar="s3://BUCKET/PREFIX", help="the images to count"
    )
    start.add_argument(
        "--state-machine-arn",
        metavar="ARN",
        help="the StateMachineArn output (default: the one named after the data bucket)",
    )
    start.add_argument("--region", help="AWS Region (default: the state machine's)")
    start.set_defaults(handler=_start)


def default_state_machine_arn(bucket: str) -> str:
    """``<prefix>-data-<account>-<region>`` -> that stage's bulk-counting state machine."""
    stage = stage_of(bucket, option="--prefix")
    return stage.state_machine_arn(stage_names.bulk_counting_state_machine(stage.prefix))


def _start(args: argparse.Namespace) -> int:
    location = split_s3_uri(args.prefix)
    if location is None or not location[1]:
        raise InputError(f"--prefix: {args.prefix!r} is not an s3://bucket/prefix URI")
    bucket, prefix = location
    arn = args.state_machine_arn or default_state_machine_arn(bucket)
    match = STATE_MACHINE_ARN.fullmatch(arn)
    if match is None:
        raise InputError(f"--state-machine-arn: {arn!r} is not a state machine ARN")
    request = {"bucket": bucket, "prefix": prefix}
    execution = start_execution(arn, request, region=args.region or match["region"])
    print(json.dumps({"executionArn": execution}, indent=2))
    return 0
