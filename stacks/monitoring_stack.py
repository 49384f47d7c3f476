"""Operations: the dashboard and every alarm, notifying the alerts topic."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.components.monitoring import CountingMonitoring
from stacks.config import AppConfig
from stacks.counting_stack import CountingStack
from stacks.training_stack import TrainingStack


class MonitoringStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        topic: sns.ITopic,
        counting: CountingStack,
        training: TrainingStack | None = None,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.monitoring = CountingMonitoring(
            self,
            "Monitoring",
            prefix=config.prefix,
            topic=topic,
            queue=counting.intake.queue,
            dead_letter_queues=[counting.intake.dead_letters, counting.intake.undeliverable],
            counter=counting.counter.function,
            endpoint_name=config.endpoint_name,
            state_machine=training.pipeline.state_machine if training else None,
            training_dead_letters=training.starts.dead_letters if training else None,
        )
        cdk.CfnOutput(
            self,
            "DashboardUrl",
            value=f"https://console.aws.amazon.com/cloudwatch/home#dashboards:name="
            f"{self.monitoring.dashboard.dashboard_name}",
        )
