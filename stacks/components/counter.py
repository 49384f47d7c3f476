"""Counting every image uploaded under ``incoming/``: intake queue, counter, result tables."""

from __future__ import annotations

import functools

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from counting_core import layout
from counting_core.contracts import counter
from counting_core.uploads.delivery import MAX_FAILURES
from stacks.components.delivery import (
    EVENT_RETRY_ATTEMPTS,
    MAX_EVENT_AGE,
    dead_letter_queue,
    encrypted_queue,
)
from stacks.components.python_function import HandlerFunction, imaging_layer
from stacks.components.storage import objects_created
from stacks.config import CounterSettings
from stacks.nag import acknowledge

# SQS redrives a message to the dead-letter queue after this many failed receives: the
# counter's own tally (counting_core.uploads.delivery) uses the same number, this is the backstop.
MAX_RECEIVES = MAX_FAILURES


# Untiled, the counter decodes a JPEG at a reduced scale (the largest, at 1/2, is 113 MB as
# RGB: images.MAX_JPEG_PIXELS) and a PNG of at most 200 MB.
UNTILED_MEMORY_MB = 1024
# Tiled, an image is decoded once at native resolution: the largest JPEG accepted
# (images.MAX_JPEG_PIXELS, 160 MP) is 640 MB as Pillow holds RGB (4 bytes a pixel), beside
# the 4,096 px annotated copy (about 45 MB), the runtime and the other images of the batch
# waiting at reduced scale. 2,048 MB leaves that with room, and gives the function a whole
# vCPU (1,769 MB and up) for cutting and encoding tiles.
# https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html
TILED_MEMORY_MB = 2048


def counter_memory_mb(settings: CounterSettings) -> int:
    """The counter's memory: more when it may tile, to decode a photo at native resolution."""
    return UNTILED_MEMORY_MB if settings.tiling.mode == "off" else TILED_MEMORY_MB


class ImageIntake(Construct):
    """S3 "Object Created" events for ``incoming/`` -> EventBridge rule -> SQS queue.

    Attributes:
        queue: what the counter consumes.
        dead_letters: messages that failed ``MAX_RECEIVES`` times.
        undeliverable: events EventBridge could not put on the queue.
        rule: the EventBridge rule.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        key: kms.IKey,
        visibility_timeout: cdk.Duration,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letters = dead_letter_queue(
            self,
            "DeadLetters",
            key,
            holds="Images the counter failed on five times",
            named_by_targets=False,
        )
        self.queue = encrypted_queue(
            self,
            "Queue",
            key,
            visibility_timeout=visibility_timeout,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letters, max_receive_count=MAX_RECEIVES
            ),
        )
        self.undeliverable = dead_letter_queue(
            self,
            "Undeliverable",
            key,
            holds="Upload events EventBridge could not put on the intake queue",
            named_by_targets=True,
        )
        self.rule = events.Rule(
            self,
            "ObjectCreated",
            description=f"Images uploaded under {layout.INCOMING} are counted",
            event_pattern=objects_created(bucket.bucket_name, {"prefix": layout.INCOMING}),
        )
        self.rule.add_target(
            targets.SqsQueue(
                self.queue,
                dead_letter_queue=self.undeliverable,
                max_event_age=MAX_EVENT_AGE,
                retry_attempts=EVENT_RETRY_ATTEMPTS,
            )
        )


class CountResults(Construct):
    """DynamoDB tables: one item per counted image version, and idempotency records.

    Attributes:
        table: partition key ``image`` (s3 URI), sort key ``version`` (version id or etag).
        idempotency: Powertools idempotency records (``id``), expiring via ``expiration``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        removal_policy: cdk.RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        # Both tables: on demand, encrypted with the project's key.
        encrypted_table = functools.partial(
            dynamodb.Table,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
        )
        self.table = encrypted_table(
            self,
            "Results",
            partition_key=dynamodb.Attribute(name="image", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="version", type=dynamodb.AttributeType.STRING),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=removal_policy == cdk.RemovalPolicy.RETAIN,
            removal_policy=removal_policy,
        )
        self.idempotency = encrypted_table(
            self,
            "Idempotency",
            partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            time_to_live_attribute="expiration",
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        acknowledge(
            self.idempotency,
            "AwsSolutions-DDB3",
            "Idempotency records expire within days and are rebuilt by the next delivery; "
            "restoring them from a backup would serve no purpose.",
        )


class ImageCounter(Construct):
    """The counter Lambda fed by the intake queue.

    Attributes:
        function: the Lambda function (``lambdas/counter``).
        handler: its HandlerFunction (log group included).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: CounterSettings,
        key: kms.IKey,
        intake: ImageIntake,
        data_bucket_name: str,
        results: CountResults,
        active_model_parameter: str,
        event_source: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.handler = HandlerFunction(
            self,
            "Counter",
            name="counter",
            description="Counts the objects in each image uploaded under incoming/",
            key=key,
            service="counter",
            contract=counter.Environment,
            environment={
                "data_bucket": data_bucket_name,
                "queue_url": intake.queue.queue_url,
                "dead_letter_queue_url": intake.dead_letters.queue_url,
                "images_in_flight": settings.images_in_flight,
                "payload_scale": settings.payload_scale,
                "results_table": results.table.table_name,
                "idempotency_table": results.idempotency.table_name,
                "active_model_parameter": active_model_parameter,
                "annotate": settings.annotate,
                # Unset when None: the active model's calibrated threshold applies.
                "score_threshold": settings.score_threshold,
                "event_source": event_source,
                **settings.tiling.environment,
                "mark_tiles": settings.mark_tiles,
            },
            timeout=cdk.Duration.seconds(settings.timeout_seconds),
            memory_size=counter_memory_mb(settings),
            layers=[imaging_layer(self)],
        )
        self.function = self.handler.function
        queue = intake.queue
        source = event_sources.SqsEventSource(
            queue,
            batch_size=settings.batch_size,
            report_batch_item_failures=True,
            max_concurrency=settings.max_concurrency,
        )
        self.function.add_event_source(source)
        acknowledge(
            self.function,
            "Serverless-LambdaDLQ",
            "The counter is only invoked synchronously by its SQS event source; a message "
            "it fails on is sent again or moved to the queue's dead-letter queue.",
        )
        acknowledge(
            self.function.node.find_child(f"SqsEventSource:{cdk.Names.node_unique_id(queue.node)}"),
            "Serverless-LambdaEventSourceMappingDestination",
            "SQS event source mappings take no on-failure destination; the intake queue's "
            "redrive policy sends repeatedly failing messages to its dead-letter queue.",
        )
