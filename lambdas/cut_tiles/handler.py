"""Cut-tiles Lambda: the training state machine's cutting of the validation images into tiles
(``service``), invoked again from where it stopped until every image is cut. Anything that
cannot be cut raises ``CutFailed`` with the reason: the state machine reports it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from adapters import clients
from counting_core.contracts.cut_tiles import CutRequest, Environment
from counting_core.errors import describe_validation_error
from lambdas.cut_tiles.service import CutFailed, TileCutter

logger = Logger()
tracer = Tracer()


@cache
def cutter() -> TileCutter:
    """The cutter of this function's environment, made on the first invocation."""
    return TileCutter(Environment.read(os.environ), s3=clients.client("s3", clients.PIPELINE_STEP))


def cut(
    event: dict[str, Any], tile_cutter: TileCutter, remaining_ms: Callable[[], int]
) -> dict[str, Any]:
    """The CutValidationTiles state's request, cut as far as time allows: the ``CutResponse``
    as JSON."""
    try:
        request = CutRequest.model_validate(event)
    except ValidationError as error:
        raise CutFailed(
            f"not a tile-cutting request: {describe_validation_error(error)[0]}"
        ) from None
    response = tile_cutter.cut(
        run_name=request.run_name,
        validation_manifest_uri=request.validation_manifest_uri,
        label_attribute=request.label_attribute,
        start=request.next,
        remaining_ms=remaining_ms,
    )
    payload = response.model_dump(by_alias=True)
    logger.info("tiles cut", extra={"run": request.run_name, "from": request.next, **payload})
    return payload


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def main(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return cut(event, cutter(), context.get_remaining_time_in_millis)
