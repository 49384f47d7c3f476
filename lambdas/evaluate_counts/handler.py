"""Evaluate-counts Lambda: the training state machine's count evaluation, before deployment.

Reads the run's validation manifest and the Batch Transform answers for its images,
measures the count error at every threshold (``counting_core.models.evaluation``), writes
``evaluation.json`` and ``evaluation.png`` under ``training/models/<run>/`` and returns
the figures at the calibrated threshold (``EvaluateResponse``). Anything that cannot be
evaluated raises ``EvaluationFailed`` with the reason: the state machine reports it.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from adapters import clients
from counting_core.contracts.evaluate_counts import Environment, EvaluateRequest
from counting_core.errors import describe_validation_error
from lambdas.evaluate_counts.service import Champion, EvaluationFailed, RunEvaluator, Tiles

logger = Logger()
tracer = Tracer()


@cache
def evaluator() -> RunEvaluator:
    """The evaluator of this function's environment, made on the first invocation."""
    return RunEvaluator(
        Environment.read(os.environ), s3=clients.client("s3", clients.PIPELINE_STEP)
    )


def evaluate(event: dict[str, Any], run_evaluator: RunEvaluator) -> dict[str, Any]:
    """The EvaluateCounts state's request, evaluated: the ``EvaluateResponse`` as JSON."""
    try:
        request = EvaluateRequest.model_validate(event)
    except ValidationError as error:
        raise EvaluationFailed(
            f"not an evaluation request: {describe_validation_error(error)[0]}"
        ) from None
    champion = request.champion
    response = run_evaluator.evaluate(
        run_name=request.run_name,
        validation_manifest_uri=request.validation_manifest_uri,
        label_attribute=request.label_attribute,
        run_class_map=request.class_map,
        predictions_uri=request.predictions_uri,
        champion=(
            Champion(champion.model_name, champion.predictions_uri, champion.class_map)
            if champion.model_name and champion.predictions_uri
            else None
        ),
        tiles=(
            None
            if request.tiles is None
            else Tiles(request.tiles.tile_sets_uri, request.tiles.predictions_uri)
        ),
    )
    payload = response.model_dump(by_alias=True)
    logger.info("counts evaluated", extra={"run": request.run_name, **payload})
    return payload


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def main(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return evaluate(event, evaluator())
