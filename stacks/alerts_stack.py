"""Where alarms and pipeline notifications go."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from stacks.components.alerts import AlertsTopic
from stacks.components.storage import DataStorage
from stacks.config import AppConfig


class AlertsStack(cdk.Stack):
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
        self.alerts = AlertsTopic(self, "Alerts", key=storage.key, emails=config.alerts.emails)
        cdk.CfnOutput(self, "AlertsTopicArn", value=self.alerts.topic.topic_arn)
