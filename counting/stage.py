"""``counting stage teardown``: what training runs create and CloudFormation does not delete.

A stage's endpoint, its endpoint configs and models (one each per deployed run, and the
bulk runs' per-run model copies), and the active-model record in Parameter Store are made
by the state machines at run time, so ``make destroy`` leaves them. Their names all start
with the stage's prefix (``<project>-<stage>-``, as the IAM policies that let the state
machines create them say), which is how this command finds them from the data bucket's name.
Without ``--yes`` it only lists them.
"""

# boto3 is imported inside the handlers: every command group is imported to build the
# parser, and `counting --help` or another group's command should not pay for it.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import json
from typing import Any

from counting.options import add_bucket_option, bucket_name, stage_of
from counting_core import stage_names


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser("stage", help="what a stage's runs left behind")
    commands = group.add_subparsers(dest="stage_command", required=True)
    teardown = commands.add_parser(
        "teardown",
        help="list (or, with --yes, delete) the endpoint, models and record runs created",
        description=(
            "List the stage's endpoint, endpoint configs, models and active-model record: what "
            "training and bulk runs created and `make destroy` leaves. With --yes, delete them "
            "(the endpoint first, so nothing serves a deleted model). Prints JSON."
        ),
    )
    add_bucket_option(teardown)
    teardown.add_argument("--yes", action="store_true", help="delete what is listed")
    teardown.set_defaults(handler=_teardown)


def _teardown(args: argparse.Namespace) -> int:
    from counting import aws

    stage = stage_of(bucket_name(args.bucket), option="--bucket", otherwise=None)
    sagemaker = aws.client("sagemaker", stage.region)
    ssm = aws.client("ssm", stage.region)
    endpoint = stage_names.endpoint(stage.prefix)
    parameter = stage_names.active_model_parameter(stage.prefix)
    with aws.reported(stage.prefix, doing=f"list the resources of {stage.prefix}"):
        found = {
            "endpoint": endpoint
            if endpoint in _names(sagemaker, "endpoints", stage.prefix)
            else None,
            "endpoint_configs": _names(sagemaker, "endpoint_configs", stage.prefix),
            "models": _names(sagemaker, "models", stage.prefix),
            "parameter": parameter if _parameter_exists(ssm, parameter) else None,
        }
    if args.yes:
        _delete(sagemaker, ssm, found)
    print(json.dumps({**found, "deleted": args.yes}, indent=2))
    return 0


def _names(sagemaker: Any, kind: str, prefix: str) -> list[str]:
    """The names of the stage's SageMaker resources of one kind (``endpoints``, ``models``,
    ``endpoint_configs``): NameContains narrows the listing, the prefix decides."""
    key = {"endpoints": "Endpoints", "models": "Models", "endpoint_configs": "EndpointConfigs"}[
        kind
    ]
    name_key = {"endpoints": "EndpointName", "models": "ModelName"}.get(kind, "EndpointConfigName")
    names = [
        summary[name_key]
        for page in sagemaker.get_paginator(f"list_{kind}").paginate(NameContains=prefix)
        for summary in page[key]
    ]
    return sorted(name for name in names if name.startswith(f"{prefix}-"))


def _parameter_exists(ssm: Any, name: str) -> bool:
    # DescribeParameters with an Equals filter answers for a missing parameter with an empty
    # list, where GetParameter would raise ParameterNotFound.
    described = ssm.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [name]}]
    )
    return bool(described["Parameters"])


def _delete(sagemaker: Any, ssm: Any, found: dict[str, Any]) -> None:
    from counting import aws

    if found["endpoint"]:
        with aws.reported(found["endpoint"], doing=f"delete {found['endpoint']}"):
            sagemaker.delete_endpoint(EndpointName=found["endpoint"])
    for config in found["endpoint_configs"]:
        with aws.reported(config, doing=f"delete {config}"):
            sagemaker.delete_endpoint_config(EndpointConfigName=config)
    for model in found["models"]:
        with aws.reported(model, doing=f"delete {model}"):
            sagemaker.delete_model(ModelName=model)
    if found["parameter"]:
        with aws.reported(found["parameter"], doing=f"delete {found['parameter']}"):
            ssm.delete_parameter(Name=found["parameter"])
