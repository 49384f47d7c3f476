"""Counter Lambda: SQS batches of S3 "Object Created" events for ``incoming/``.

Counts the images of a batch ``IMAGES_IN_FLIGHT`` at a time, each once per object version
(Powertools idempotency). Every message ends counted, rejected (recorded with its reason),
sent again as a new message, or dead-lettered by the counter itself, as
``counting_core.uploads.failures`` and ``counting_core.uploads.delivery`` decide; only a
message whose copy SQS refused is reported as a batch item failure. Metrics are emitted after
the idempotency record is saved, and only by the delivery that counted, so no retry counts twice.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from pydantic import BaseModel, ConfigDict, Field

from counting_core.counts.results import STATUS_COUNTED, ImageRef
from counting_core.models.model_record import ActiveModel
from counting_core.uploads import delivery
from lambdas.counter import endpoint
from lambdas.counter.service import CountingService, Handled, MessageHandler, Redelivery

# Seconds the active-model record is cached: a new deployment is picked up within this.
ACTIVE_MODEL_CACHE_SECONDS = 60
# How long a counted version is remembered as done (S3 duplicates arrive within minutes).
IDEMPOTENCY_EXPIRY_SECONDS = 7 * 24 * 3600
# Result events: botocore retries throttled or failed PutEvents requests (standard mode);
# announcements.publish retries the entries EventBridge refuses one by one.
EVENTS_CLIENT_CONFIG = Config(retries={"mode": "standard"})


class Environment(BaseModel):
    model_config = ConfigDict(frozen=True)

    data_bucket: str = Field(alias="DATA_BUCKET", min_length=3)
    queue_url: str = Field(alias="QUEUE_URL", min_length=1)
    dead_letter_queue_url: str = Field(alias="DEAD_LETTER_QUEUE_URL", min_length=1)
    results_table: str = Field(alias="RESULTS_TABLE", min_length=1)
    idempotency_table: str = Field(alias="IDEMPOTENCY_TABLE", min_length=1)
    active_model_parameter: str = Field(alias="ACTIVE_MODEL_PARAMETER", min_length=1)
    # Unset: the active model's calibrated threshold (model_record.score_threshold).
    score_threshold: float | None = Field(None, alias="SCORE_THRESHOLD", ge=0, le=1)
    annotate: bool = Field(alias="ANNOTATE")
    images_in_flight: int = Field(alias="IMAGES_IN_FLIGHT", ge=1, le=10)
    payload_scale: float = Field(alias="PAYLOAD_SCALE", ge=1)
    event_source: str = Field(alias="EVENT_SOURCE", min_length=1)


ENV = Environment.model_validate(os.environ)
logger = Logger()
tracer = Tracer()
metrics = Metrics()
# Every message is settled by the counter itself (see MessageHandler); a batch item failure
# only reports one whose copy SQS refused, and is never raised for the whole batch.
processor = AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
idempotency = IdempotencyConfig(
    event_key_jmespath="[bucket, key, version_id, etag]",
    expires_after_seconds=IDEMPOTENCY_EXPIRY_SECONDS,
    raise_on_no_idempotency_key=True,
)
# Lambda runs one invocation at a time per execution environment, so one budget is enough.
time_budget = delivery.TimeBudget()


@cache
def counting_service() -> CountingService:
    return CountingService(
        s3=boto3.client("s3"),
        sagemaker_runtime=boto3.client("sagemaker-runtime", config=endpoint.CLIENT_CONFIG),
        dynamodb=boto3.client("dynamodb"),
        table_name=ENV.results_table,
        active_model=active_model,
        configured_threshold=ENV.score_threshold,
        annotate_images=ENV.annotate,
        payload_scale=ENV.payload_scale,
        endpoint_slots=ENV.images_in_flight,
        put_events=boto3.client("events", config=EVENTS_CLIENT_CONFIG).put_events,
        event_source=ENV.event_source,
    )


@cache
def message_handler() -> MessageHandler:
    return MessageHandler(
        count_once=lambda image, attempt: count_once(image=image, attempt=attempt),
        redelivery=Redelivery(
            sqs=boto3.client("sqs"),
            queue_url=ENV.queue_url,
            dead_letter_queue_url=ENV.dead_letter_queue_url,
        ),
        time_budget=time_budget,
        data_bucket=ENV.data_bucket,
        in_progress=IdempotencyAlreadyInProgressError,
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
def count_once(image: dict[str, Any], attempt: str) -> dict[str, Any]:
    # `attempt` is saved with the outcome: a replay returns another delivery's attempt.
    return {**asdict(counting_service().count(ImageRef(**image))), "attempt": attempt}


def emit_metrics(outcome: dict[str, Any], image: str | None) -> None:
    if outcome["status"] == STATUS_COUNTED:
        metrics.add_metric("ImagesCounted", MetricUnit.Count, 1)
        metrics.add_metric("ObjectsCounted", MetricUnit.Count, outcome["count"])
        # 0 or 1 per counted image: the sum counts capped images, the average is their share.
        metrics.add_metric("ImagesCapped", MetricUnit.Count, int(outcome["capped"]))
        metrics.add_metric(
            "EndpointLatency", MetricUnit.Milliseconds, outcome["endpoint_latency_ms"] or 0
        )
        if outcome["capped"]:
            logger.warning(
                "count capped: the model returned as many detections as its cap",
                extra={"image": image, "count": outcome["count"]},
            )
        for class_name, count in (outcome["by_class"] or {}).items():
            with single_metric(
                name="ObjectsCountedByClass", unit=MetricUnit.Count, value=count
            ) as metric:
                metric.add_dimension("ClassName", class_name)
    else:
        metrics.add_metric("ImagesRejected", MetricUnit.Count, 1)
        logger.warning("image rejected", extra={"image": image, "reason": outcome["reason"]})


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def main(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    idempotency.register_lambda_context(context)
    time_budget.new_invocation()
    records = [record for record in event.get("Records") or [] if isinstance(record, dict)]
    tallies = [delivery.Tally.of(_receive_count(r), _attributes(r)) for r in records]
    handler, _ = message_handler(), counting_service()  # created here, not in the threads
    # First settle what the plan does not count, so a suspect counted next cannot take them down.
    passed_on: dict[str, Handled | Exception] = {}
    counted: dict[str, delivery.Tally] = {}
    for record, tally, action in zip(records, tallies, delivery.plan_batch(tallies), strict=True):
        message_id = record.get("messageId", "")
        if action is delivery.Action.COUNT:
            counted[message_id] = tally
            continue
        try:
            passed_on[message_id] = handler.pass_on(
                str(record.get("body", "")), tally, action, str(record.get("receiptHandle", ""))
            )
        except Exception as error:  # reported below as this message's batch item failure
            passed_on[message_id] = error
    # One image more than the endpoint slots: it is read and scaled, or its results written,
    # while the others wait for the endpoint, so no slot idles between two images.
    in_flight = asyncio.Semaphore(ENV.images_in_flight + 1)
    settled: list[tuple[SQSRecord, Handled]] = []

    async def settle(record: SQSRecord) -> None:
        early = passed_on.get(record.message_id)
        if isinstance(early, Exception):
            raise early
        if early is not None:
            settled.append((record, early))
            return
        async with in_flight:
            handled = await asyncio.to_thread(
                handler.handle,
                record.body or "",
                counted[record.message_id],
                context.get_remaining_time_in_millis,
                str(uuid.uuid4()),
            )
        settled.append((record, handled))

    response = async_process_partial_response(
        event=event, record_handler=settle, processor=processor, context=context
    )
    for message, handled in settled:
        logger.info(
            "message settled",
            extra={
                "message_id": message.message_id,
                "image": handled.image,
                "how": handled.how,
                "reason": handled.reason,
            },
        )
        if handled.outcome is not None:
            emit_metrics(handled.outcome, handled.image)
    return response


def _attributes(record: Any) -> dict[str, Any]:
    attributes = record.get("messageAttributes") if isinstance(record, dict) else None
    return attributes if isinstance(attributes, dict) else {}


def _receive_count(record: Any) -> int:
    attributes = record.get("attributes") if isinstance(record, dict) else None
    try:
        return int((attributes or {}).get("ApproximateReceiveCount", 1))
    except (TypeError, ValueError):
        return 1
