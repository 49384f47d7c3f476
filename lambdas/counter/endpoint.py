"""The counter's calls to the serverless endpoint: botocore's retries, plus a cold start's.

botocore (standard mode) retries throttling, 5xx answers, timeouts and broken connections
within one call. A cold serverless endpoint answers ``ModelNotReadyException`` until its
model is loaded, which botocore does not retry; ``invoke`` waits and tries again, with
backoff, for as long as AWS gives a cold start. Every figure is in
``counting_core.constants``, which also derives the worst case of one image from them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from counting_core.constants import (
    ENDPOINT_CALL_ATTEMPTS,
    ENDPOINT_COLD_START_SECONDS,
    ENDPOINT_CONNECT_TIMEOUT_SECONDS,
    ENDPOINT_READ_TIMEOUT_SECONDS,
    MODEL_NOT_READY_FIRST_WAIT_SECONDS,
    MODEL_NOT_READY_LONGEST_WAIT_SECONDS,
)

# "total_max_attempts" counts the first call; botocore's "max_attempts" would count retries.
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": ENDPOINT_CALL_ATTEMPTS},
    connect_timeout=ENDPOINT_CONNECT_TIMEOUT_SECONDS,
    read_timeout=ENDPOINT_READ_TIMEOUT_SECONDS,
)
# SageMaker Runtime's answer while a serverless endpoint's resources are being provisioned.
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html
MODEL_NOT_READY = "ModelNotReadyException"


def invoke(call: Callable[[], Any]) -> Any:
    """``call()``, tried again while the endpoint is not ready, for at most a cold start.

    A retry starts only while it begins within ``ENDPOINT_COLD_START_SECONDS`` of the
    first call, so the whole takes at most that plus one call's worst case; after that the
    ``ModelNotReadyException`` is raised like any other error.
    """
    started = time.monotonic()
    wait = MODEL_NOT_READY_FIRST_WAIT_SECONDS
    while True:
        try:
            return call()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != MODEL_NOT_READY:
                raise
            if time.monotonic() + wait - started > ENDPOINT_COLD_START_SECONDS:
                raise
        time.sleep(wait)
        wait = min(wait * 2, MODEL_NOT_READY_LONGEST_WAIT_SECONDS)
