"""Counter Lambda: SQS batches of S3 "Object Created" events for ``incoming/``.

Parses each message, counts the image once per object version (Powertools
idempotency), and reports per-message failures so SQS retries only those; a
message that keeps failing ends in the dead-letter queue. Images that cannot be
counted (not JPEG/PNG, empty, corrupt) are recorded as rejections, not retried.

An image is started only while the invocation has time left for its worst case
(``IMAGE_WORST_CASE_SECONDS``); the rest of the batch is handed back untouched, so a
slow endpoint never times the whole invocation out and loses the batch report.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from pydantic import BaseModel, ConfigDict, Field

from counting_core.constants import IMAGE_WORST_CASE_SECONDS
from counting_core.events import ObjectCreated
from counting_core.model_record import ActiveModel
from counting_core.results import STATUS_COUNTED, ImageRef
from lambdas.counter import endpoint
from lambdas.counter.service import CountingService

# Seconds the active-model record is cached: a new deployment is picked up within this.
ACTIVE_MODEL_CACHE_SECONDS = 60
# How long a counted version is remembered as done (S3 duplicates arrive within minutes).
IDEMPOTENCY_EXPIRY_SECONDS = 7 * 24 * 3600
# Result events: botocore retries throttled or failed PutEvents requests (standard mode);
# announcements.publish retries the entries EventBridge refuses one by one.
EVENTS_CLIENT_CONFIG = Config(retries={"mode": "standard"})


class NotEnoughTime(Exception):
    """Too little of the invocation is left to count one more image: SQS delivers it again."""


class TimeBudget:
    """Starts an image only if the invocation can still finish it in the worst case.

    The first image of an invocation always starts: the function timeout is at least
    one worst case (``CounterSettings.timeout_seconds``), and by the time it starts only
    milliseconds have gone, which would otherwise refuse it forever at that minimum.
    """

    def __init__(self) -> None:
        self.images_started = 0

    def new_invocation(self) -> None:
        self.images_started = 0

    def start_image(self, remaining_ms: int) -> None:
        """Count an image as started, or raise NotEnoughTime if it might not finish."""
        if self.images_started and remaining_ms < IMAGE_WORST_CASE_SECONDS * 1000:
            raise NotEnoughTime(
                f"not started: {remaining_ms / 1000:.1f} s left in this invocation, one image "
                f"may take {IMAGE_WORST_CASE_SECONDS} s; SQS delivers it again"
            )
        self.images_started += 1


class Environment(BaseModel):
    model_config = ConfigDict(frozen=True)

    results_table: str = Field(alias="RESULTS_TABLE", min_length=1)
    idempotency_table: str = Field(alias="IDEMPOTENCY_TABLE", min_length=1)
    active_model_parameter: str = Field(alias="ACTIVE_MODEL_PARAMETER", min_length=1)
    # Unset: the active model's calibrated threshold (model_record.score_threshold).
    score_threshold: float | None = Field(None, alias="SCORE_THRESHOLD", ge=0, le=1)
    annotate: bool = Field(alias="ANNOTATE")
    event_source: str = Field(alias="EVENT_SOURCE", min_length=1)


ENV = Environment.model_validate(os.environ)
logger = Logger()
tracer = Tracer()
metrics = Metrics()
# Report every failed message, even when all failed, instead of failing the invocation:
# SQS then retries exactly those messages and redrives each to the DLQ on its own count.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
idempotency = IdempotencyConfig(
    event_key_jmespath="[bucket, key, version_id, etag]",
    expires_after_seconds=IDEMPOTENCY_EXPIRY_SECONDS,
    raise_on_no_idempotency_key=True,
)
# Lambda runs one invocation at a time per execution environment, so one budget is enough.
time_budget = TimeBudget()


@cache
def counting_service() -> CountingService:
    return CountingService(
        s3=boto3.client("s3"),
        sagemaker_runtime=boto3.client("sagemaker-runtime", config=endpoint.CLIENT_CONFIG),
        table=boto3.resource("dynamodb").Table(ENV.results_table),
        active_model=active_model,
        configured_threshold=ENV.score_threshold,
        annotate_images=ENV.annotate,
        put_events=boto3.client("events", config=EVENTS_CLIENT_CONFIG).put_events,
        event_source=ENV.event_source,
    )


def active_model() -> ActiveModel:
    record = parameters.get_parameter(
        ENV.active_model_parameter, max_age=ACTIVE_MODEL_CACHE_SECONDS
    )
    return ActiveModel.model_validate_json(record)


ImageCount = Callable[..., dict[str, Any]]
# Powertools types this decorator as Any; it returns the function with its signature unchanged.
once_per_image: Callable[[ImageCount], ImageCount] = idempotent_function(
    data_keyword_argument="image",
    persistence_store=DynamoDBPersistenceLayer(table_name=ENV.idempotency_table),
    config=idempotency,
)


@once_per_image
def count_once(image: dict[str, Any]) -> dict[str, Any]:
    outcome = counting_service().count(ImageRef(**image))
    # Metrics are emitted here, inside the idempotent call, so a duplicate adds nothing.
    if outcome.status == STATUS_COUNTED:
        metrics.add_metric("ImagesCounted", MetricUnit.Count, 1)
        metrics.add_metric("ObjectsCounted", MetricUnit.Count, outcome.count)
        metrics.add_metric(
            "EndpointLatency", MetricUnit.Milliseconds, outcome.endpoint_latency_ms or 0
        )
        for class_name, count in (outcome.by_class or {}).items():
            with single_metric(
                name="ObjectsCountedByClass", unit=MetricUnit.Count, value=count
            ) as metric:
                metric.add_dimension("ClassName", class_name)
    else:
        metrics.add_metric("ImagesRejected", MetricUnit.Count, 1)
        logger.warning("image rejected", extra={"image": image, "reason": outcome.reason})
    return asdict(outcome)


@tracer.capture_method
def handle_record(record: SQSRecord, lambda_context: LambdaContext) -> dict[str, Any]:
    # BatchProcessor passes `lambda_context` to a record handler that names that parameter.
    image = ObjectCreated.model_validate_json(record.body).object_version()
    logger.append_keys(image=image.uri)
    try:
        # Checked before the idempotent call: nothing is written, no idempotency record.
        time_budget.start_image(lambda_context.get_remaining_time_in_millis())
    except NotEnoughTime as error:
        logger.warning("image left for a later invocation", extra={"reason": str(error)})
        raise
    return count_once(image=asdict(image))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def main(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    idempotency.register_lambda_context(context)
    time_budget.new_invocation()
    return process_partial_response(
        event=event, record_handler=handle_record, processor=processor, context=context
    )
