"""Labeling: a request upload starts a Ground Truth job; a completed job is announced."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from counting_core import layout
from stacks.components.labeling import LabelingJobs
from stacks.components.storage import DataStorage
from stacks.config import AppConfig


class LabelingStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        storage: DataStorage,
        workteam_arn: str,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.jobs = LabelingJobs(
            self,
            "Jobs",
            prefix=config.prefix,
            settings=config.labeling,
            storage=storage,
            workteam_arn=workteam_arn,
        )
        cdk.CfnOutput(
            self,
            "LabelingRequestsUri",
            value=f"s3://{storage.bucket_name}/{layout.LABELING_REQUESTS}",
            description="Upload a labeling request (JSON) here to start a labeling job",
        )
        cdk.CfnOutput(self, "LauncherFunctionName", value=self.jobs.launcher.function.function_name)
        cdk.CfnOutput(self, "DeadLetterQueueUrl", value=self.jobs.dead_letters.queue_url)
        cdk.CfnOutput(self, "GroundTruthRoleArn", value=self.jobs.ground_truth_role.role_arn)
        cdk.CfnOutput(
            self,
            "CompletionEventSource",
            value=self.jobs.event_source,
            description="source of the 'Labeling Job Completed' events that start training",
        )
