"""The retry policies as Step Functions renders them, and the waits they add up to.

AWS defines the retrier's wait before retry n (from 1) as IntervalSeconds x BackoffRate^(n-1);
JitterStrategy FULL makes each a random wait between 0 and that, NONE (the default) keeps it.
https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html
Built on a state of their own in a stack of their own: no app is synthesized.
"""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import aws_stepfunctions as sfn

from stacks.components.workflow import retry_policies
from stacks.components.workflow.retry_policies import RetryPolicy


def rendered(policy: RetryPolicy) -> dict:
    stack = cdk.Stack(cdk.App(), "Policies")
    state = sfn.CustomState(
        stack, "Task", state_json={"Type": "Task", "Resource": "arn:aws:states:::x", "End": True}
    )
    policy.apply(state)
    (retrier,) = stack.resolve(state.to_state_json())["Retry"]
    return retrier


def longest_waits(retrier: dict) -> list[float]:
    return [
        retrier["IntervalSeconds"] * retrier["BackoffRate"] ** attempt
        for attempt in range(retrier["MaxAttempts"])
    ]


@pytest.mark.parametrize(
    ("policy", "minutes"),
    [
        # Every 5 minutes, 11 times: 55 minutes of waiting for quota, as pipeline.OVERHEAD keeps.
        (retry_policies.TRAINING_CAPACITY, 55),
        # Every 5 minutes, 5 times: 25 minutes, the evaluation's share (evaluate.evaluation_time).
        (retry_policies.TRANSFORM_CAPACITY, 25),
    ],
)
def test_waits_for_capacity_take_the_whole_time_their_comments_promise(policy, minutes):
    retrier = rendered(policy)

    # With full jitter these would average half: about 27 and 12 minutes.
    assert retrier["JitterStrategy"] == "NONE"
    assert sum(longest_waits(retrier)) == minutes * 60


def test_api_retries_spread_with_full_jitter_within_their_longest_waits():
    retrier = rendered(retry_policies.SAGEMAKER_JOB_API)

    assert retrier["JitterStrategy"] == "FULL"
    # At most 1, 2 and 4 minutes apart: 7 minutes at the longest, 3.5 on average.
    assert longest_waits(retrier) == [60, 120, 240]
