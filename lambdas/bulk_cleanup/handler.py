"""Bulk cleanup Lambda: each ended execution of the bulk-counting state machine, as
EventBridge delivers it, gets its run's model copy deleted if one is left
(``service.RunCleanup`` says how). Failures raise, so Lambda retries the event and then
sends it to the dead-letter queue.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from adapters import clients
from counting_core.contracts.bulk_cleanup import Environment
from counting_core.contracts.events import ExecutionEnded
from counting_core.errors import describe_validation_error
from lambdas.bulk_cleanup.service import RunCleanup

logger = Logger()
tracer = Tracer()


@cache
def cleanup() -> RunCleanup:
    """The cleanup of this function's environment, made on the first invocation."""
    return RunCleanup(
        Environment.read(os.environ),
        stepfunctions=clients.client("stepfunctions", clients.PIPELINE_STEP),
        sagemaker=clients.client("sagemaker", clients.PIPELINE_STEP),
    )


class NotAnEndedExecution(Exception):
    """The event is not a Step Functions execution status change; the message says why."""


def clean(event: dict[str, Any], run_cleanup: RunCleanup) -> dict[str, Any]:
    try:
        ended = ExecutionEnded.model_validate(event)
    except ValidationError as error:
        problem = describe_validation_error(error)[0]
        raise NotAnEndedExecution(f"not an execution status change: {problem}") from None
    report = run_cleanup.clean(ended)
    logger.info(
        "model copy deleted" if report.deleted else "no model copy left",
        extra=report.model_dump(),
    )
    return report.model_dump()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def main(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return clean(event, cleanup())
