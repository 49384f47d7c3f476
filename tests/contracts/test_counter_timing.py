"""The longest one image can take in the counter, recomputed from first principles.

The inputs are AWS's published limits (typed here from the pages, not imported), the
counter's client configuration as botocore itself resolves it, botocore's own backoff
code, and the synthesized template. The code's constants, the function timeout and the
queue's visibility timeout must all hold against this recomputation.
"""

from __future__ import annotations

import types

import boto3
import pytest
from botocore.retries.standard import ExponentialBackoff

from adapters import clients
from counting_core import constants
from stacks.config import CounterSettings
from tests.contracts.conftest import synthesized

# A serverless container must answer /invocations within 1 minute, and a cold one has 3
# minutes to download its model and answer /ping.
# https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints-invoke.html
INVOCATION_LIMIT_SECONDS = 60
COLD_START_SECONDS = 3 * 60
# A queue's visibility timeout: at least six times the function's timeout.
# https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html
VISIBILITY_FACTOR = 6
COUNTER_HANDLER = "lambdas.counter.handler.main"


def resolved_client_config():
    """The counter's endpoint client configuration after botocore has read it."""
    client = boto3.client("sagemaker-runtime", region_name="us-east-1", config=clients.ENDPOINT)
    return client.meta.config


def longest_backoff(retry: int) -> float:
    """botocore's own longest wait before ``retry`` (1-based): throttled, jitter at its top,
    and a server asking for far more than botocore will honour."""
    context = types.SimpleNamespace(
        attempt_number=retry,
        http_response=types.SimpleNamespace(headers={"x-amz-retry-after": str(10**9)}),
    )
    throttled = types.SimpleNamespace(is_throttling_error_from_context=lambda _context: True)
    backoff = ExponentialBackoff(random=lambda: 1.0, throttling_detector=throttled)
    return backoff.delay_amount(context)


def one_call_worst_case() -> float:
    config = resolved_client_config()
    attempts = config.retries["total_max_attempts"]
    waiting = attempts * (config.connect_timeout + config.read_timeout)
    return waiting + sum(longest_backoff(retry) for retry in range(1, attempts))


def image_worst_case() -> float:
    # A cold start's retries begin within COLD_START_SECONDS of the first call
    # (tests/lambdas/test_counter.py holds the counter to that); the last takes a whole call.
    return COLD_START_SECONDS + one_call_worst_case() + constants.IMAGE_STORAGE_ALLOWANCE_SECONDS


def test_botocore_makes_the_attempts_the_counter_counts_on():
    # Config's "max_attempts" counts retries; "total_max_attempts" counts every call.
    assert resolved_client_config().retries["total_max_attempts"] == 2


def test_a_read_outlasts_the_longest_invocation():
    assert resolved_client_config().read_timeout > INVOCATION_LIMIT_SECONDS


def test_the_counter_budgets_one_image_at_its_recomputed_worst_case():
    assert constants.IMAGE_WORST_CASE_SECONDS == image_worst_case() == 366


@pytest.mark.synth
def test_the_deployed_timeouts_fit_the_worst_case():
    template = synthesized("defaults")
    stack = "object-counting-dev-counting"
    (counter,) = [
        body["Properties"]
        for body in template.resources(stack, "AWS::Lambda::Function").values()
        if body["Properties"].get("Handler") == COUNTER_HANDLER
    ]
    (mapping,) = template.resources(stack, "AWS::Lambda::EventSourceMapping").values()
    queue_id = mapping["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]
    queue = template.resources(stack, "AWS::SQS::Queue")[queue_id]["Properties"]

    assert counter["Timeout"] >= image_worst_case()
    assert counter["Timeout"] == CounterSettings().timeout_seconds
    assert queue["VisibilityTimeout"] >= VISIBILITY_FACTOR * counter["Timeout"]
