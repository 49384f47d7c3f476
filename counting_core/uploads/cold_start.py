"""Waiting out a serverless endpoint's cold start: the policy the counter and the CLI share.

A cold serverless endpoint answers ``ModelNotReadyException`` until its model is loaded,
which botocore does not retry (``constants.ENDPOINT_COLD_START_SECONDS`` says why and
cites AWS). ``call_until_ready`` waits and asks again, with backoff, for as long as AWS
gives a cold start. Pure: ``is_model_not_ready`` reads the error the way boto3's guide
does (``error.response["Error"]["Code"]``) without importing botocore.
https://boto3.amazonaws.com/v1/documentation/api/latest/guide/error-handling.html
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from counting_core.constants import (
    ENDPOINT_COLD_START_SECONDS,
    MODEL_NOT_READY_FIRST_WAIT_SECONDS,
    MODEL_NOT_READY_LONGEST_WAIT_SECONDS,
)

Answer = TypeVar("Answer")

#: InvokeEndpoint's error code while a serverless endpoint is still being provisioned.
#: https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html
MODEL_NOT_READY = "ModelNotReadyException"


def is_model_not_ready(error: Exception) -> bool:
    """True for botocore's ClientError with the ``ModelNotReadyException`` code."""
    response: Any = getattr(error, "response", None)
    return isinstance(response, dict) and response.get("Error", {}).get("Code") == MODEL_NOT_READY


def call_until_ready(
    call: Callable[[], Answer],
    *,
    on_wait: Callable[[float], None] = lambda seconds: None,
) -> Answer:
    """``call()``, tried again while it raises ``ModelNotReadyException``.

    Waits 5 s, doubling up to 40 s, and calls ``on_wait(seconds)`` before each wait. A
    retry starts only within ``ENDPOINT_COLD_START_SECONDS`` of the first call, so the whole
    takes at most that plus one call's worst case; after that the error is raised like any
    other.
    """
    started = time.monotonic()
    wait: float = MODEL_NOT_READY_FIRST_WAIT_SECONDS
    while True:
        try:
            return call()
        except Exception as error:
            out_of_time = time.monotonic() + wait - started > ENDPOINT_COLD_START_SECONDS
            if out_of_time or not is_model_not_ready(error):
                raise
        on_wait(wait)
        time.sleep(wait)
        wait = min(wait * 2, MODEL_NOT_READY_LONGEST_WAIT_SECONDS)
