"""Labeling launcher Lambda: two EventBridge events, one function.

* S3 "Object Created" under ``labeling/requests/``: validate the request, write the
  job's input manifest, label categories and worker template, start the Ground Truth
  job. A bad request gets a rejection beside it and is not retried.
* "SageMaker Ground Truth Labeling Job State Change" to Completed for this app's jobs:
  announce the output manifest on the default bus (``counting_core.datasets.labeling``
  documents it).

Anything else that fails raises, so Lambda retries the asynchronous invocation and
then sends it to the function's dead-letter destination.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from adapters import clients
from counting_core.contracts.events import ObjectCreated
from counting_core.contracts.labeling_launcher import Environment
from counting_core.datasets import labeling
from lambdas.labeling_launcher.service import LabelingLauncher


class LabelingJobStateChange(BaseModel):
    detail_type: str = Field(alias="detail-type", pattern=f"^{labeling.GROUND_TRUTH_STATE_CHANGE}$")
    # The one labeling job whose state changed.
    resources: list[str] = Field(min_length=1, max_length=1)


logger = Logger()
tracer = Tracer()


@cache
def launcher() -> LabelingLauncher:
    """The launcher of this function's environment, made on the first invocation; its
    clients are in the function's Region (Lambda sets it)."""
    return LabelingLauncher(
        Environment.read(os.environ),
        s3=clients.client("s3", clients.PIPELINE_STEP),
        sagemaker=clients.client("sagemaker", clients.PIPELINE_STEP),
        events=clients.client("events", clients.PIPELINE_STEP),
    )


def launch(event: dict[str, Any], labeling_launcher: LabelingLauncher) -> dict[str, str]:
    """A request upload started (or rejected), or a completed job announced."""
    if event.get("detail-type") == labeling.GROUND_TRUTH_STATE_CHANGE:
        change = LabelingJobStateChange.model_validate(event)
        outcome = labeling_launcher.announce_completion(change.resources[0])
    else:
        request = ObjectCreated.model_validate(event).object_version()
        outcome = labeling_launcher.launch(request.bucket, request.key, request.version_id)
    logger.info("labeling launcher", extra=outcome)
    return outcome


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def main(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    return launch(event, launcher())
