"""Queues and retry limits every asynchronous hop of the app shares.

EventBridge targets and SQS-fed functions all end the same way: what cannot be
delivered or processed lands in an encrypted dead-letter queue, kept as long as SQS
allows, for inspection and a manual redrive.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.nag import acknowledge

# EventBridge's own maxima: it keeps retrying delivery to a target for a day.
# https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-retry-policy.html
EVENT_RETRY_ATTEMPTS = 185
MAX_EVENT_AGE = cdk.Duration.hours(24)
# Lambda retries a failed asynchronous invocation twice (6 hours at most, Lambda's maximum),
# then sends it to the dead letters.
ASYNC_RETRY_ATTEMPTS = 2
ASYNC_MAX_EVENT_AGE = cdk.Duration.hours(6)
# Dead letters are kept for the longest time SQS allows (14 days).
DEAD_LETTER_RETENTION = cdk.Duration.days(14)


def encrypted_queue(scope: Construct, construct_id: str, key: kms.IKey, **props) -> sqs.Queue:
    """An SQS queue encrypted with ``key`` that refuses requests without TLS."""
    return sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        # One data key per 5 minutes instead of a KMS call per message.
        data_key_reuse=cdk.Duration.minutes(5),
        enforce_ssl=True,
        **props,
    )


def dead_letter_queue(
    scope: Construct,
    construct_id: str,
    key: kms.IKey,
    *,
    holds: str,
    named_by_targets: bool,
) -> sqs.Queue:
    """An encrypted dead-letter queue; ``holds`` says what lands in it ("Images that ...").

    ``named_by_targets``: EventBridge targets or Lambda destinations name the queue, not an
    SQS redrive policy, so cdk-nag cannot tell that it is a dead-letter queue.
    """
    queue = encrypted_queue(scope, construct_id, key, retention_period=DEAD_LETTER_RETENTION)
    acknowledge(
        queue,
        "Serverless-SQSRedrivePolicy",
        f"{holds} stay here two weeks to be inspected and replayed; a dead-letter "
        "queue of this one would only move them.",
    )
    if named_by_targets:
        acknowledge(
            queue,
            "AwsSolutions-SQS3",
            f"{holds} arrive here from EventBridge targets or Lambda destinations, which name "
            "this queue as their dead-letter queue outside any redrive policy.",
        )
    return queue


def dead_letter_failed_invocations(
    function: lambda_.Function, queue: sqs.IQueue, *, who: str
) -> None:
    """Retry ``function``'s failed asynchronous invocations, then send them, with the error,
    to ``queue``. The function's role needs ``sqs:SendMessage`` on the queue (and the key).

    Set on the L1 resource: the SqsDestination construct would grant the role wildcard KMS
    actions.
    """
    function.configure_async_invoke(
        retry_attempts=ASYNC_RETRY_ATTEMPTS, max_event_age=ASYNC_MAX_EVENT_AGE
    )
    invoke_config = function.node.find_child("EventInvokeConfig").node.default_child
    assert isinstance(invoke_config, lambda_.CfnEventInvokeConfig)
    invoke_config.destination_config = lambda_.CfnEventInvokeConfig.DestinationConfigProperty(
        on_failure=lambda_.CfnEventInvokeConfig.OnFailureProperty(destination=queue.queue_arn)
    )
    acknowledge(
        function,
        "Serverless-LambdaDLQ",
        f"{who}'s failed asynchronous invocations go to its on-failure destination, the "
        "same dead-letter queue, with the error; a DLQ would duplicate them.",
    )


def retried_lambda_target(
    function: lambda_.IFunction, dead_letters: sqs.IQueue
) -> targets.LambdaFunction:
    """An EventBridge rule's target ``function``: delivery retried as long as EventBridge
    allows, then the event sent to ``dead_letters``."""
    return targets.LambdaFunction(
        function,
        dead_letter_queue=dead_letters,
        retry_attempts=EVENT_RETRY_ATTEMPTS,
        max_event_age=MAX_EVENT_AGE,
    )
