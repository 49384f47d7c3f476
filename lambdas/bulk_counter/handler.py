"""Bulk-counting Lambda: the steps of the bulk-counting state machine that touch data.

One function, four requests (``action``): ``select`` a batch of listed objects,
``manifest`` (join the selections into the transform's input), ``count`` a batch of
transform outputs, ``summarize`` the run. The state machine retries the Lambda service's
own errors; an error raised here fails that batch, which the Distributed Map tolerates
up to ``bulk.tolerated_failure_percentage`` and records in its result files.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, Literal

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from counting_core.counts import bulk
from counting_core.models.model_record import ActiveModel
from lambdas.bulk_counter.service import WORKERS, BulkCounter

# botocore's "standard" retry mode backs off on throttling and 5xx ("legacy" is the default);
# the pool holds one connection per worker thread of a batch.
CLIENT_CONFIG = Config(retries={"mode": "standard"}, max_pool_connections=WORKERS)


class Environment(BaseModel):
    model_config = ConfigDict(frozen=True)

    bucket: str = Field(alias="DATA_BUCKET", min_length=3)
    results_table: str = Field(alias="RESULTS_TABLE", min_length=1)
    # Unset: the active model's calibrated threshold (model_record.score_threshold).
    score_threshold: float | None = Field(None, alias="SCORE_THRESHOLD", ge=0, le=1)
    annotate: bool = Field(alias="ANNOTATE")
    max_payload_bytes: int = Field(alias="MAX_PAYLOAD_BYTES", ge=1)
    event_source: str = Field(alias="EVENT_SOURCE", min_length=1)


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    run: str = Field(min_length=1, max_length=63)


class Select(_Request):
    action: Literal["select"]
    model: ActiveModel
    items: list[bulk.ListedObject]


class WriteManifest(_Request):
    action: Literal["manifest"]


class Count(_Request):
    action: Literal["count"]
    model: ActiveModel
    items: list[bulk.ListedObject]


class Summarize(_Request):
    action: Literal["summarize"]
    prefix: str
    model_name: str
    transform: bulk.TransformOutcome


Request = TypeAdapter(
    Annotated[Select | WriteManifest | Count | Summarize, Field(discriminator="action")]
)

ENV = Environment.model_validate(os.environ)
logger = Logger()
tracer = Tracer()
metrics = Metrics()


@cache
def bulk_counter() -> BulkCounter:
    return BulkCounter(
        s3=boto3.client("s3", config=CLIENT_CONFIG),
        table=boto3.resource("dynamodb", config=CLIENT_CONFIG).Table(ENV.results_table),
        put_events=boto3.client("events", config=CLIENT_CONFIG).put_events,
        bucket=ENV.bucket,
        configured_threshold=ENV.score_threshold,
        annotate_images=ENV.annotate,
        max_payload_bytes=ENV.max_payload_bytes,
        event_source=ENV.event_source,
        clock=lambda: datetime.now(UTC),
    )


def _emit(report: bulk.BatchReport) -> None:
    """The upload pipeline's metrics, a batch at a time (dimension service=bulk-counting)."""
    metrics.add_metric("ImagesCounted", MetricUnit.Count, report.counted)
    metrics.add_metric("ObjectsCounted", MetricUnit.Count, sum(report.objects_by_class.values()))
    metrics.add_metric("ImagesCapped", MetricUnit.Count, report.capped)
    metrics.add_metric("ImagesRejected", MetricUnit.Count, report.rejected)
    for class_name, count in report.objects_by_class.items():
        with single_metric(
            name="ObjectsCountedByClass", unit=MetricUnit.Count, value=count
        ) as metric:
            metric.add_dimension("ClassName", class_name)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def main(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = Request.validate_python(event)
    logger.append_keys(run=request.run, action=request.action)
    counter = bulk_counter()
    match request:
        case Select():
            report = counter.select(request.run, request.model, request.items)
            _emit(report)
            return report.model_dump()
        case WriteManifest():
            return counter.write_manifest(request.run)
        case Count():
            report = counter.count(request.run, request.model, request.items)
            _emit(report)
            return report.model_dump()
        case Summarize():
            summary = counter.summarize(
                request.run, request.prefix, request.model_name, request.transform
            )
            return summary.model_dump(mode="json")
