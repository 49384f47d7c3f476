"""Counting: images under incoming/ in, results/, annotated/, table items and metrics out."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from counting_core import layout
from counting_core.constants import QUEUE_VISIBILITY_TIMEOUT_FACTOR
from stacks.components.counter import CountResults, ImageCounter, ImageIntake
from stacks.components.permissions import acknowledge_object_prefixes, allow
from stacks.components.result_events import ResultContracts, grant_put_result_events
from stacks.components.storage import REMOVAL_POLICIES, DataStorage
from stacks.config import AppConfig


class CountingStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        storage: DataStorage,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        settings = config.counter
        key, bucket = storage.key, storage.bucket_in(self)
        self.data_bucket = bucket

        self.intake = ImageIntake(
            self,
            "Intake",
            bucket=bucket,
            key=key,
            visibility_timeout=cdk.Duration.seconds(
                settings.timeout_seconds * QUEUE_VISIBILITY_TIMEOUT_FACTOR
            ),
        )
        self.results = CountResults(
            self,
            "Results",
            key=key,
            removal_policy=REMOVAL_POLICIES[config.storage.removal_policy],
        )
        self.counter = ImageCounter(
            self,
            "Counter",
            settings=settings,
            key=key,
            intake=self.intake,
            data_bucket_name=storage.bucket_name,
            results=self.results,
            active_model_parameter=config.active_model_parameter,
            event_source=config.event_source,
        )
        self.contracts = ResultContracts(
            self, "ResultContracts", prefix=config.prefix, source=config.event_source
        )

        self._grant_counter(config, storage)
        grant_put_result_events(self.counter.handler.role, source=config.event_source)

        cdk.CfnOutput(self, "IntakeQueueUrl", value=self.intake.queue.queue_url)
        cdk.CfnOutput(self, "DeadLetterQueueUrl", value=self.intake.dead_letters.queue_url)
        cdk.CfnOutput(self, "ResultsTableName", value=self.results.table.table_name)
        cdk.CfnOutput(self, "CounterFunctionName", value=self.counter.function.function_name)
        cdk.CfnOutput(
            self,
            "SchemaRegistryName",
            value=self.contracts.registry.attr_registry_name,
            description="Result document, table item and result event schemas",
        )

    def _grant_counter(self, config: AppConfig, storage: DataStorage) -> None:
        """Exactly what the counter does: read an image, write its result, call one endpoint."""
        role = self.counter.handler.role
        bucket = self.data_bucket
        statements = {
            "ReadIncomingImages": (
                ["s3:GetObject", "s3:GetObjectVersion"],
                [bucket.arn_for_objects(f"{layout.INCOMING}*")],
            ),
            # GetObject: the result store reads a file's ETag (HeadObject) to write it only
            # while the image's version is its key's newest (adapters/result_store.py).
            "WriteResultsAndAnnotatedImages": (
                ["s3:GetObject", "s3:PutObject"],
                [
                    bucket.arn_for_objects(f"{layout.RESULTS}*"),
                    bucket.arn_for_objects(f"{layout.ANNOTATED}*"),
                ],
            ),
            "UseTheDataKey": (
                ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                [storage.key.key_arn],
            ),
            "RecordResults": (["dynamodb:PutItem"], [self.results.table.table_arn]),
            "SendAgainOrDeadLetter": (
                ["sqs:SendMessage"],
                [self.intake.queue.queue_arn, self.intake.dead_letters.queue_arn],
            ),
            "TrackIdempotency": (
                [
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                ],
                [self.results.idempotency.table_arn],
            ),
            "ReadActiveModel": (
                ["ssm:GetParameter"],
                [
                    self.format_arn(
                        service="ssm",
                        resource="parameter",
                        resource_name=config.active_model_parameter.lstrip("/"),
                    )
                ],
            ),
            "InvokeTheEndpoint": (
                ["sagemaker:InvokeEndpoint"],
                [
                    self.format_arn(
                        service="sagemaker", resource="endpoint", resource_name=config.endpoint_name
                    )
                ],
            ),
        }
        policy = allow(role, statements)
        acknowledge_object_prefixes(
            policy,
            storage.bucket_name,
            {
                prefix: f"The counter {why}: object names are not known in advance, so access "
                f"is limited to the {prefix} prefix."
                for prefix, why in (
                    (layout.INCOMING, "reads the uploaded images it counts"),
                    (layout.RESULTS, "writes one result per image, named after it"),
                    (layout.ANNOTATED, "writes one annotated copy per image, named after it"),
                )
            },
        )
