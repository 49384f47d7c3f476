"""Bulk counting: every image under a prefix of the data bucket, on Batch Transform."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.components.bulk.cleanup import BulkRunCleanup
from stacks.components.bulk.pipeline import BulkCountingPipeline
from stacks.components.storage import DataStorage
from stacks.config import AppConfig


class BulkCountingStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        storage: DataStorage,
        results_table: dynamodb.ITable,
        topic: sns.ITopic,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.pipeline = BulkCountingPipeline(
            self,
            "Pipeline",
            config=config,
            storage=storage,
            results_table=results_table,
            topic=topic,
        )
        BulkRunCleanup(
            self,
            "RunCleanup",
            prefix=config.prefix,
            state_machine=self.pipeline.state_machine,
            key=storage.key,
        )
        cdk.CfnOutput(
            self,
            "StateMachineArn",
            value=self.pipeline.state_machine.state_machine_arn,
            description="counting bulk start --prefix s3://<data bucket>/<prefix> "
            "[--state-machine-arn <this>]",
        )
        cdk.CfnOutput(
            self,
            "BulkFunctionName",
            value=self.pipeline.function.handler.function.function_name,
        )
