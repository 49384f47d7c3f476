"""Training: a labeled manifest to a live serverless endpoint, one state machine run."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_sns as sns
from constructs import Construct

from counting_core import layout
from stacks.components.storage import DataStorage
from stacks.components.training.pipeline import TrainingPipeline
from stacks.components.training.starts import TrainingStarts
from stacks.config import AppConfig


class TrainingStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        storage: DataStorage,
        topic: sns.ITopic,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.pipeline = TrainingPipeline(
            self, "Pipeline", config=config, storage=storage, topic=topic
        )
        self.starts = TrainingStarts(
            self,
            "Starts",
            prefix=config.prefix,
            bucket_name=storage.bucket_name,
            key=storage.key,
            state_machine=self.pipeline.state_machine,
        )
        cdk.CfnOutput(
            self,
            "StateMachineArn",
            value=self.pipeline.state_machine.state_machine_arn,
            description="counting train start --state-machine-arn <this>",
        )
        cdk.CfnOutput(
            self,
            "TrainingRequestsUri",
            value=f"s3://{storage.bucket_name}/{layout.TRAINING_REQUESTS}",
            description="Upload an augmented manifest (*.manifest) here to start training",
        )
        cdk.CfnOutput(self, "EndpointName", value=config.endpoint_name)
        cdk.CfnOutput(self, "ActiveModelParameterName", value=config.active_model_parameter)
        cdk.CfnOutput(self, "DeadLetterQueueUrl", value=self.starts.dead_letters.queue_url)
