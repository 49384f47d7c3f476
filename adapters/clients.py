"""One botocore client policy per use: retries, timeouts and connection pools.

Every client a handler makes takes one of these, by name, so each figure is set (and its
reason given) once. botocore's default retry mode is "legacy"; "standard" backs off on
throttling and 5xx answers and retries timeouts and broken connections.
https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from counting_core.constants import (
    AWS_CALL_ATTEMPTS,
    ENDPOINT_CALL_ATTEMPTS,
    ENDPOINT_CONNECT_TIMEOUT_SECONDS,
    ENDPOINT_READ_TIMEOUT_SECONDS,
)

# Threads that share one client at most: bulk counting's workers (adapters.result_store.WORKERS)
# and the counter's images in flight plus one (CounterSettings.images_in_flight, at most 10).
# botocore's default pool holds 10 connections; a thread beyond them opens and drops its own.
# https://botocore.amazonaws.com/v1/documentation/api/latest/reference/config.html
SHARED_BY_THREADS = 11

#: The counter's calls to the serverless endpoint: the attempts and timeouts the counter's
#: time budget is computed from (counting_core.constants, IMAGE_WORST_CASE_SECONDS).
#: "total_max_attempts" counts the first call; botocore's "max_attempts" would count retries.
ENDPOINT = Config(
    retries={"mode": "standard", "total_max_attempts": ENDPOINT_CALL_ATTEMPTS},
    connect_timeout=ENDPOINT_CONNECT_TIMEOUT_SECONDS,
    read_timeout=ENDPOINT_READ_TIMEOUT_SECONDS,
)
#: What the counter and bulk counting read and write per image (S3, DynamoDB, EventBridge,
#: SQS, SSM): botocore's standard retries (3 attempts); a failure past them fails the image,
#: which its pipeline tries again (a new message, or the result store's own attempts).
STORAGE = Config(retries={"mode": "standard"}, max_pool_connections=SHARED_BY_THREADS)
# Reads a pipeline step makes at once: the evaluation's Batch Transform answers (one GET
# after another, 100,000 validation images would outlast its 5 minutes).
PARALLEL_READS = 32
#: The labeling launcher's and the training pipeline's steps: more attempts, since a step
#: that fails stops a whole run (counting_core.constants.AWS_CALL_ATTEMPTS).
PIPELINE_STEP = Config(
    retries={"mode": "standard", "total_max_attempts": AWS_CALL_ATTEMPTS},
    max_pool_connections=PARALLEL_READS,
)


def client(service: str, policy: Config) -> Any:
    """A boto3 client for ``service`` under ``policy`` (one of the above)."""
    return boto3.client(service, config=policy)
