"""Evaluate-counts Lambda: the training state machine's count evaluation, before deployment.

Reads the run's validation manifest and the Batch Transform answers for its images,
measures the count error at every threshold (``counting_core.models.evaluation``), writes
``evaluation.json`` and ``evaluation.png`` under ``training/models/<run>/`` and returns
the figures at the calibrated threshold (``EvaluationSummary``). Anything that cannot be
evaluated raises ``EvaluationFailed`` with the reason: the state machine reports it.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from counting_core.constants import AWS_CALL_ATTEMPTS
from counting_core.errors import describe_validation_error
from lambdas.evaluate_counts.service import Champion, EvaluationFailed, RunEvaluator

# botocore's "standard" mode retries throttling and 5xx with backoff; "legacy" is the default.
CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": AWS_CALL_ATTEMPTS})


class Environment(BaseModel):
    model_config = ConfigDict(frozen=True)

    bucket: str = Field(alias="BUCKET", min_length=3)


class ChampionRequest(BaseModel):
    """The active model to compare with: empty when there is none (a first model)."""

    model_config = ConfigDict(alias_generator=to_camel, frozen=True)

    model_name: str | None = Field(None, min_length=1)
    predictions_uri: str | None = Field(None, min_length=1)
    # Its class map, as its record holds it: counts are compared only for the same classes.
    class_map: dict[str, str] = Field(default_factory=dict)


class EvaluateRequest(BaseModel):
    """What the EvaluateCounts state sends (JSON keys in camelCase)."""

    model_config = ConfigDict(alias_generator=to_camel, frozen=True)

    run_name: str = Field(min_length=1)
    validation_manifest_uri: str = Field(min_length=1)
    label_attribute: str | None = None
    # The run's class map as Prepare found it in the whole manifest (the validation images
    # alone may lack a class).
    class_map: dict[str, str] = Field(default_factory=dict)
    predictions_uri: str = Field(min_length=1)
    champion: ChampionRequest = ChampionRequest()


ENV = Environment.model_validate(os.environ)
logger = Logger()
tracer = Tracer()


@cache
def evaluator() -> RunEvaluator:
    return RunEvaluator(s3=boto3.client("s3", config=CLIENT_CONFIG), bucket=ENV.bucket)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def main(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = EvaluateRequest.model_validate(event)
    except ValidationError as error:
        raise EvaluationFailed(
            f"not an evaluation request: {describe_validation_error(error)[0]}"
        ) from None
    champion = request.champion
    result = evaluator().evaluate(
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
    )
    payload = result.payload()
    logger.info("counts evaluated", extra={"run": request.run_name, **payload})
    return payload
