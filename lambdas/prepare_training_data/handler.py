"""Prepare Lambda: the training state machine's first step, before any GPU is paid for.

Reads the labeled manifest the run was started with, checks and splits it with
``counting_core.datasets.manifest``, writes ``train.manifest``, ``validation.manifest`` and
``data-report.json`` under ``training/manifests/<run>/`` and returns the run's names and
figures (``PreparedRun``). A request or manifest that cannot train raises
``DataNotTrainable`` with the reason: the state machine reports it and stops.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from adapters import clients
from counting_core.contracts.prepare_training_data import Environment, PrepareRequest
from counting_core.errors import describe_validation_error
from counting_core.models.training import DataNotTrainable
from lambdas.prepare_training_data.service import TrainingDataPreparer

logger = Logger()
tracer = Tracer()


@cache
def preparer() -> TrainingDataPreparer:
    """The preparer of this function's environment, made on the first invocation."""
    return TrainingDataPreparer(
        Environment.read(os.environ), s3=clients.client("s3", clients.PIPELINE_STEP)
    )


def prepare(event: dict[str, Any], training_data: TrainingDataPreparer) -> dict[str, Any]:
    """The Prepare state's request, prepared: the ``PreparedRun`` as JSON."""
    try:
        request = PrepareRequest.model_validate(event)
    except ValidationError as error:
        problem = describe_validation_error(error)[0]
        raise DataNotTrainable(f"not a training request: {problem}") from None
    run = training_data.prepare(request)
    logger.info("training data prepared", extra={"run": run.run_name, **run.figures})
    return run.model_dump(by_alias=True)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def main(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return prepare(event, preparer())
