"""Bulk-counting Lambda: the steps of the bulk-counting state machine that touch data.

One function, four requests (``action``): ``select`` a batch of listed objects,
``manifest`` (join the selections into the transform's input), ``count`` a batch of
transform outputs, ``summarize`` the run. The state machine retries the Lambda service's
own errors; an error raised here fails that batch, which the Distributed Map tolerates
up to ``bulk.tolerated_failure_percentage`` and records in its result files. One image's
failure fails only that image (``failed`` in its batch's report).

Nothing is read at import: ``bulk_counter()`` builds the ``BulkCounter`` on the first
invocation from the environment and this function's clients; tests build one from their own.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from adapters.objects import Objects
from adapters.result_store import StoreClients
from counting_core.contracts.bulk_counter import (
    Count,
    Environment,
    Request,
    Select,
    Summarize,
    WriteManifest,
)
from lambdas.bulk_counter.service import WRITE_ATTEMPTS, BulkCounter

logger = Logger()
tracer = Tracer()


def build(environment: Environment, aws: StoreClients) -> BulkCounter:
    """A bulk counter over ``aws``'s clients, configured by ``environment``."""
    return BulkCounter(
        objects=Objects(aws.s3, environment.bucket),
        dynamodb=aws.dynamodb,
        store=aws.result_store(
            table_name=environment.results_table,
            event_source=environment.event_source,
            attempts=WRITE_ATTEMPTS,
        ),
        table_name=environment.results_table,
        configured_threshold=environment.score_threshold,
        annotate_images=environment.annotate,
        max_payload_bytes=environment.max_payload_bytes,
        tiling_policy=environment.tiling_policy,
        clock=lambda: datetime.now(UTC),
    )


def run_step(counter: BulkCounter, event: dict[str, Any]) -> dict[str, Any]:
    """Answer one request of the state machine."""
    request = Request.validate_python(event)
    logger.append_keys(run=request.run, action=request.action)
    match request:
        case Select():
            return counter.select(request.run, request.model, request.items).model_dump()
        case WriteManifest():
            return counter.write_manifest(request.run).model_dump()
        case Count():
            return counter.count(request.run, request.model, request.items).model_dump()
        case Summarize():
            summary = counter.summarize(
                request.run, request.prefix, request.model_name, request.transform
            )
            return summary.model_dump(mode="json")


@cache
def bulk_counter() -> BulkCounter:
    """This execution environment's bulk counter, built on first use."""
    return build(Environment.read(os.environ), StoreClients.of_this_function())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def main(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return run_step(bulk_counter(), event)
