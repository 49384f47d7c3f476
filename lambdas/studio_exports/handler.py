"""Studio exports Lambda: an object created under ``labeling/studio/exports/`` rebuilds the
stage's studio manifest (``service.StudioExports`` says how); a rejected export is logged,
other failures raise, so Lambda retries and then dead-letters the event.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from adapters import clients
from counting_core.contracts.events import ObjectCreated
from counting_core.contracts.studio_exports import Environment
from lambdas.studio_exports.service import StudioExports

logger = Logger()
tracer = Tracer()


@cache
def exports() -> StudioExports:
    """The converter of this function's environment, made on the first invocation."""
    return StudioExports(
        Environment.read(os.environ), s3=clients.client("s3", clients.PIPELINE_STEP)
    )


def convert(event: dict[str, Any], studio: StudioExports) -> dict[str, Any]:
    outcome = studio.convert(ObjectCreated.model_validate(event))
    if "rejected" in outcome:
        logger.warning("export not converted", extra=outcome)
    else:
        logger.info(outcome["summary"], extra={"trigger": outcome["trigger"]})
    return outcome


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def main(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return convert(event, exports())
