"""The counter's client for the serverless endpoint: botocore's retries and timeouts.

botocore (standard mode) retries throttling, 5xx answers, timeouts and broken connections
within one call; the service wraps each call in ``counting_core.uploads.cold_start`` for a cold
start's waits, which the CLI's ``counting invoke`` shares. Every figure is in
``counting_core.constants``, which also derives the worst case of one image from them.
"""

from __future__ import annotations

from botocore.config import Config

from counting_core.constants import (
    ENDPOINT_CALL_ATTEMPTS,
    ENDPOINT_CONNECT_TIMEOUT_SECONDS,
    ENDPOINT_READ_TIMEOUT_SECONDS,
)

# "total_max_attempts" counts the first call; botocore's "max_attempts" would count retries.
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": ENDPOINT_CALL_ATTEMPTS},
    connect_timeout=ENDPOINT_CONNECT_TIMEOUT_SECONDS,
    read_timeout=ENDPOINT_READ_TIMEOUT_SECONDS,
)
