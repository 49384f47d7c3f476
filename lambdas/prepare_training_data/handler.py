"""Prepare Lambda: the training state machine's first step, before any GPU is paid for.

Reads the labeled manifest the run was started with, checks and splits it with
``counting_core.datasets.manifest``, writes ``train.manifest``, ``validation.manifest`` and
``data-report.json`` under ``training/manifests/<run>/`` and returns the run's names and
figures (``counting_core.models.training.PreparedRun``). A request or manifest that cannot train
raises ``DataNotTrainable`` with the reason: the state machine reports it and stops.

The manifest is streamed to a file in /tmp and split from there, and the channels are
written to /tmp before they are uploaded, so memory stays flat however many images there
are; the function's ephemeral storage bounds the manifest size instead (see
``stacks/components/training/prepare.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from counting_core.constants import AWS_CALL_ATTEMPTS
from counting_core.datasets import manifest
from counting_core.errors import InputError, describe_validation_error
from counting_core.models import training
from counting_core.models.training import DataNotTrainable, TrainingRequest

# botocore's "standard" mode retries throttling and 5xx with backoff; "legacy" is the default.
CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": AWS_CALL_ATTEMPTS})
MANIFEST_CONTENT_TYPE = "application/jsonlines"
# Bytes per read while streaming the manifest from S3 into /tmp.
DOWNLOAD_CHUNK = 1 << 20


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
    name = training.run_name(ENV.name_prefix, prepare.execution_id, prepare.started_at)
    folder = training.run_folder(name)
    image_source = training.image_prefix_uri(ENV.bucket)
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch)
        download(key, local / "input.manifest")
        try:
            with (local / "input.manifest").open("rb") as file:
                split = manifest.split(
                    file,
                    label_attribute=request.label_attribute,
                    validation_fraction=ENV.validation_fraction,
                    seed=ENV.split_seed,
                    image_source=image_source,
                )
                with (
                    (local / training.TRAIN_FILE).open("wb") as train,
                    (local / training.VALIDATION_FILE).open("wb") as validation,
                ):
                    split.write(train, validation)
        except InputError as error:
            raise DataNotTrainable(f"{request.manifest_uri}: {error}") from None
        for file_name in (training.TRAIN_FILE, training.VALIDATION_FILE):
            upload(f"{folder}{file_name}", local / file_name)
        # What the run's Batch Transform counts to evaluate the model (the images checked
        # above), and every image of the run: the torchvision job's images channel.
        write(
            f"{folder}{training.VALIDATION_IMAGES_FILE}",
            images_manifest([local / training.VALIDATION_FILE], image_source),
            "application/json",
        )
        write(
            f"{folder}{training.IMAGES_FILE}",
            images_manifest(
                [local / training.TRAIN_FILE, local / training.VALIDATION_FILE], image_source
            ),
            "application/json",
        )

    report = {"run": name, "manifest": request.manifest_uri, **split.report()}
    if request.labeling_job_name:
        report["labeling_job"] = request.labeling_job_name
    write(f"{folder}{training.REPORT_FILE}", json.dumps(report, indent=2), "application/json")
    figures = split.result.figures()
    logger.info("training data prepared", extra={"run": name, **figures})
    run = training.prepared_run(name=name, bucket=ENV.bucket, split=split.result, figures=figures)
    return run.model_dump(by_alias=True)


def images_manifest(channels: list[Path], image_source: str) -> str:
    """The images the ``channels`` (written above) list, as a ManifestFile."""

    def source_refs() -> Iterator[str]:
        for channel in channels:
            with channel.open("rb") as lines:
                yield from (json.loads(line)[manifest.SOURCE_REF] for line in lines)

    return training.transform_manifest(source_refs(), image_source)


def download(key: str, path: Path) -> None:
    """Stream the manifest into ``path``; a missing object cannot train."""
    try:
        body = s3().get_object(Bucket=ENV.bucket, Key=key)["Body"]
    except s3().exceptions.NoSuchKey:
        raise DataNotTrainable(f"s3://{ENV.bucket}/{key}: no such object") from None
    with path.open("wb") as file:
        shutil.copyfileobj(body, file, DOWNLOAD_CHUNK)


def upload(key: str, path: Path) -> None:
    # A file body is streamed: a channel of a million lines is never held in memory.
    with path.open("rb") as body:
        s3().put_object(Bucket=ENV.bucket, Key=key, Body=body, ContentType=MANIFEST_CONTENT_TYPE)


def write(key: str, text: str, content_type: str) -> None:
    s3().put_object(Bucket=ENV.bucket, Key=key, Body=text.encode("utf-8"), ContentType=content_type)
