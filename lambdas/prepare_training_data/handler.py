"""Prepare Lambda: the training state machine's first step, before any GPU is paid for.

Reads the labeled manifest the run was started with, checks and splits it with
``counting.manifest``, writes ``train.manifest``, ``validation.manifest`` and
``data-report.json`` under ``training/manifests/<run>/`` and returns the run's names and
figures (``counting.training.PreparedRun``). A request or manifest that cannot train
raises ``DataNotTrainable`` with the reason: the state machine reports it and stops.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from counting_core import manifest, training
from counting_core.errors import InputError, describe_validation_error
from counting_core.training import DataNotTrainable, TrainingRequest

# botocore's "standard" mode retries throttling and 5xx with backoff; "legacy" is the default.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})
MANIFEST_CONTENT_TYPE = "application/jsonlines"


class Environment(BaseModel):
    model_config = ConfigDict(frozen=True)

    bucket: str = Field(alias="BUCKET", min_length=3)
    name_prefix: str = Field(alias="NAME_PREFIX", min_length=1)
    validation_fraction: float = Field(alias="VALIDATION_FRACTION", gt=0, lt=1)
    split_seed: int = Field(alias="SPLIT_SEED")


class PrepareEvent(BaseModel):
    """What the Prepare state sends: the execution's input and its identity."""

    request: TrainingRequest
    execution_id: str = Field(alias="executionId", min_length=1)
    started_at: datetime = Field(alias="startedAt")


ENV = Environment.model_validate(os.environ)
logger = Logger()
tracer = Tracer()


@cache
def s3() -> Any:
    return boto3.client("s3", config=CLIENT_CONFIG)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def main(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        prepare = PrepareEvent.model_validate(event)
    except ValidationError as error:
        problem = describe_validation_error(error)[0]
        raise DataNotTrainable(f"not a training request: {problem}") from None
    request = prepare.request
    key = training.manifest_key(request.manifest_uri, ENV.bucket)
    try:
        data = manifest.prepare_training_data(
            read_text(key).split("\n"),
            label_attribute=request.label_attribute,
            validation_fraction=ENV.validation_fraction,
            seed=ENV.split_seed,
        )
    except InputError as error:
        raise DataNotTrainable(f"{request.manifest_uri}: {error}") from None
    split = data.split
    training.check_image_locations(split.train + split.validation, ENV.bucket)

    name = training.run_name(ENV.name_prefix, prepare.execution_id, prepare.started_at)
    folder = training.run_folder(name)
    report = {"run": name, "manifest": request.manifest_uri, **data.report}
    if request.labeling_job_name:
        report["labeling_job"] = request.labeling_job_name
    write(f"{folder}{training.TRAIN_FILE}", manifest.manifest_text(split.train))
    write(f"{folder}{training.VALIDATION_FILE}", manifest.manifest_text(split.validation))
    # What the run's Batch Transform counts to evaluate the model (the images checked above).
    write(
        f"{folder}{training.VALIDATION_IMAGES_FILE}",
        training.transform_manifest(
            (json.loads(line)[manifest.SOURCE_REF] for line in split.validation),
            training.image_prefix_uri(ENV.bucket),
        ),
        "application/json",
    )
    write(f"{folder}{training.REPORT_FILE}", json.dumps(report, indent=2), "application/json")
    logger.info("training data prepared", extra={"run": name, **split.figures()})
    run = training.prepared_run(name=name, bucket=ENV.bucket, split=split, figures=split.figures())
    return run.model_dump(by_alias=True)


def read_text(key: str) -> str:
    """The manifest's text; a missing or non-UTF-8 object cannot train."""
    uri = f"s3://{ENV.bucket}/{key}"
    try:
        body: bytes = s3().get_object(Bucket=ENV.bucket, Key=key)["Body"].read()
    except s3().exceptions.NoSuchKey:
        raise DataNotTrainable(f"{uri}: no such object") from None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataNotTrainable(f"{uri}: not UTF-8 text (byte {error.start})") from None


def write(key: str, text: str, content_type: str = MANIFEST_CONTENT_TYPE) -> None:
    s3().put_object(Bucket=ENV.bucket, Key=key, Body=text.encode("utf-8"), ContentType=content_type)
