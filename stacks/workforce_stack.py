"""Labeling workforce: who may sign in to the labeling portal, and the team jobs go to."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from stacks.components.storage import DataStorage
from stacks.components.workforce import LabelingWorkforce
from stacks.config import AppConfig


class WorkforceStack(cdk.Stack):
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
        self.workforce = LabelingWorkforce(
            self, "Workforce", prefix=config.prefix, settings=config.workforce, key=storage.key
        )
        cdk.CfnOutput(
            self,
            "LabelingPortalUrl",
            value=self.workforce.portal_url,
            description="Sign-in page of the labeling portal: send it to invited workers",
        )
        cdk.CfnOutput(self, "WorkteamArn", value=self.workforce.workteam_arn)
        cdk.CfnOutput(self, "UserPoolId", value=self.workforce.user_pool.user_pool_id)
