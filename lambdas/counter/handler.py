"""Counter Lambda: SQS batches of S3 "Object Created" events for ``incoming/``.

Counts the images of a batch ``IMAGES_IN_FLIGHT`` at a time, each once per object version
(Powertools idempotency, its outcome kept as ``results.Outcome`` through Powertools'
dataclass serializer; a replay is marked by the idempotency response hook). Every message
ends counted, rejected (recorded with its reason), sent again as a new message, or
dead-lettered by the counter itself, as ``counting_core.uploads.failures`` and
``counting_core.uploads.delivery`` decide; only a message whose copy SQS refused is reported
as a batch item failure. Each image's result, event and metrics are written by the result
store (``adapters.result_store``), once per version and model.

Nothing is read at import: ``counter()`` builds the ``Counter`` on the first invocation from
the environment and this function's clients; tests build one from their own.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Tracer
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
    IdempotencyPersistenceLayerError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from aws_lambda_powertools.utilities.idempotency.serialization.dataclass import (
    DataclassSerializer,
)
from aws_lambda_powertools.utilities.parameters import SSMProvider
from aws_lambda_powertools.utilities.typing import LambdaContext

from adapters import clients
from adapters.redelivery import Redelivery
from adapters.result_store import StoreClients
from counting_core.contracts.counter import Environment
from counting_core.contracts.published import SourceObject
from counting_core.counts.results import Outcome
from counting_core.models.model_record import ActiveModel
from counting_core.uploads import delivery
from counting_core.uploads.failures import Fate
from lambdas.counter.service import CountingService, Handled, MessageHandler

# Seconds the active-model record is cached: a new deployment is picked up within this.
ACTIVE_MODEL_CACHE_SECONDS = 60
# How long a counted version is remembered as done (S3 duplicates arrive within minutes).
IDEMPOTENCY_EXPIRY_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Clients(StoreClients):
    """The AWS clients the counter calls through: the result store's, and its own."""

    sqs: Any
    ssm: Any
    sagemaker_runtime: Any


logger = Logger()
tracer = Tracer()


def count_once(*, image: SourceObject, service: CountingService, counted: list[Outcome]) -> Outcome:
    """Count ``image``: the unit idempotency runs once per version (its key: the bucket, key,
    version id and ETag of the image's fields).

    The outcome is also put in ``counted``, so a caller knows the count was recorded even
    when Powertools then fails to save it.
    """
    outcome = service.count(image)
    counted.append(outcome)
    return outcome


def _replayed(response: Any, idempotent_data: DataRecord) -> Any:
    """Idempotency's response hook: an outcome read back from its record is a replay."""
    return replace(response, replayed=True)


class Counter:
    """The counter of one execution environment, built from its environment and clients."""

    def __init__(self, environment: Environment, aws: Clients) -> None:
        self.environment = environment
        # Every message is settled by the counter itself (see MessageHandler); a batch item
        # failure only reports one whose copy SQS refused, never the whole batch.
        self._processor = AsyncBatchProcessor(
            event_type=EventType.SQS, raise_on_entire_batch_failure=False
        )
        self._idempotency = IdempotencyConfig(
            event_key_jmespath="[bucket, key, version_id, etag]",
            expires_after_seconds=IDEMPOTENCY_EXPIRY_SECONDS,
            raise_on_no_idempotency_key=True,
            response_hook=_replayed,
        )
        # Lambda runs one invocation at a time per execution environment: one budget is enough.
        self.time_budget = delivery.TimeBudget()
        models = SSMProvider(boto3_client=aws.ssm)
        self.service = CountingService(
            s3=aws.s3,
            sagemaker_runtime=aws.sagemaker_runtime,
            store=aws.result_store(
                table_name=environment.results_table, event_source=environment.event_source
            ),
            active_model=lambda: ActiveModel.model_validate_json(
                str(
                    models.get(
                        environment.active_model_parameter, max_age=ACTIVE_MODEL_CACHE_SECONDS
                    )
                )
            ),
            configured_threshold=environment.score_threshold,
            annotate_images=environment.annotate,
            payload_scale=environment.payload_scale,
            tiling_policy=environment.tiling_policy,
            mark_tiles=environment.mark_tiles,
            endpoint_slots=environment.images_in_flight,
            time_budget=self.time_budget,
        )
        # Powertools types the decorator as Any; it keeps the function's signature.
        once: Callable[..., Outcome] = idempotent_function(
            data_keyword_argument="image",
            persistence_store=DynamoDBPersistenceLayer(
                table_name=environment.idempotency_table, boto3_client=aws.dynamodb
            ),
            config=self._idempotency,
            output_serializer=DataclassSerializer(Outcome),
        )(count_once)
        self._once = once
        self.messages = MessageHandler(
            count_once=self._count,
            redelivery=Redelivery(
                sqs=aws.sqs,
                queue_url=environment.queue_url,
                dead_letter_queue_url=environment.dead_letter_queue_url,
            ),
            time_budget=self.time_budget,
            data_bucket=environment.data_bucket,
            in_progress=IdempotencyAlreadyInProgressError,
        )

    def _count(self, image: SourceObject) -> Outcome:
        """Count ``image`` once per version; a count recorded stays counted if Powertools
        cannot save its outcome (a later duplicate then finds the result store's record)."""
        counted: list[Outcome] = []
        try:
            return self._once(image=image, service=self.service, counted=counted)
        except IdempotencyPersistenceLayerError as error:
            if not counted:
                raise
            logger.warning(
                "counted, but its idempotency record was not saved",
                extra={"image": image.uri, "error": str(error)},
            )
            return counted[0]

    def process(
        self, event: Mapping[str, Any], context: LambdaContext
    ) -> PartialItemFailureResponse:
        """Settle every message of one SQS batch."""
        self._idempotency.register_lambda_context(context)
        self.time_budget.new_invocation(context.get_remaining_time_in_millis)
        records = [record for record in event.get("Records") or [] if isinstance(record, dict)]
        tallies = [delivery.Tally.of(_receive_count(r), _attributes(r)) for r in records]
        # First settle what the plan does not count, so a suspect counted next cannot take
        # them down.
        passed_on: dict[str, Handled | Exception] = {}
        for record, tally, planned in zip(
            records, tallies, delivery.plan_batch(tallies), strict=True
        ):
            if planned is None:
                continue
            try:
                passed_on[record.get("messageId", "")] = self.messages.pass_on(
                    str(record.get("body", "")),
                    tally,
                    planned,
                    str(record.get("receiptHandle", "")),
                )
            except Exception as error:  # reported below as this message's batch item failure
                passed_on[record.get("messageId", "")] = error
        counted = {
            record.get("messageId", ""): tally
            for record, tally in zip(records, tallies, strict=True)
            if record.get("messageId", "") not in passed_on
        }
        # One image more than the endpoint slots: it is read and scaled, or its results
        # written, while the others wait for the endpoint, so no slot idles between two images.
        in_flight = asyncio.Semaphore(self.environment.images_in_flight + 1)
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
                    self.messages.handle, record.body or "", counted[record.message_id]
                )
            settled.append((record, handled))

        response = async_process_partial_response(
            event=dict(event), record_handler=settle, processor=self._processor, context=context
        )
        for message, handled in settled:
            _log(message.message_id, handled)
        return response


def _log(message_id: str, handled: Handled) -> None:
    outcome = handled.outcome
    extra = {
        "message_id": message_id,
        "image": handled.image,
        "fate": handled.fate,
        "reason": handled.reason,
        "replayed": outcome.replayed if outcome else None,
    }
    if outcome is not None and outcome.capped and not outcome.replayed:
        logger.warning(
            "count capped: the model returned as many detections as its cap", extra=extra
        )
    elif handled.fate is Fate.REJECTED and outcome is not None and not outcome.replayed:
        logger.warning("image rejected", extra=extra)
    else:
        logger.info("message settled", extra=extra)


def _attributes(record: Any) -> dict[str, Any]:
    attributes = record.get("messageAttributes") if isinstance(record, dict) else None
    return attributes if isinstance(attributes, dict) else {}


def _receive_count(record: Any) -> int:
    attributes = record.get("attributes") if isinstance(record, dict) else None
    try:
        return int((attributes or {}).get("ApproximateReceiveCount", 1))
    except (TypeError, ValueError):
        return 1


@cache
def counter() -> Counter:
    """This execution environment's counter, built on first use."""
    aws = Clients.of_this_function(
        sqs=clients.client("sqs", clients.STORAGE),
        ssm=clients.client("ssm", clients.STORAGE),
        sagemaker_runtime=clients.client("sagemaker-runtime", clients.ENDPOINT),
    )
    return Counter(Environment.read(os.environ), aws)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def main(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return counter().process(event, context)
