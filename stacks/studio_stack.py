"""Label Studio: a self-hosted labeling tool behind the stage's Cognito sign-in."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_sns as sns
from constructs import Construct

from counting_core import layout
from stacks.components.storage import DataStorage
from stacks.components.studio import LabelStudio
from stacks.config import AppConfig


class StudioStack(cdk.Stack):
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
        self.studio = LabelStudio(
            self,
            "Studio",
            prefix=config.prefix,
            settings=config.labeling.studio,
            storage=storage,
            topic=topic,
        )
        cdk.CfnOutput(self, "StudioUrl", value=self.studio.url, description="Open Label Studio")
        cdk.CfnOutput(
            self,
            "StudioProjectUrl",
            # Label Studio's page of a project's tasks (data_manager/urls.py, project-data).
            value=f"{self.studio.url}/projects/{self.studio.project_id}/data/",
            description="The stage's labeling project, kept in step with its settings",
        )
        cdk.CfnOutput(
            self,
            "StudioLoadBalancerDns",
            value=self.studio.load_balancer.load_balancer_dns_name,
            description="Point labeling.studio.domain_name at this name (CNAME or alias)",
        )
        cdk.CfnOutput(
            self,
            "StudioAdministratorSecretArn",
            value=self.studio.admin_secret.secret_arn,
            description="Label Studio's first administrator: email and password",
        )
        cdk.CfnOutput(
            self,
            "StudioApiTokenSecretArn",
            value=self.studio.api_token.secret_arn,
            description="The administrator's Label Studio API token",
        )
        cdk.CfnOutput(self, "StudioUserPoolId", value=self.studio.user_pool.user_pool_id)
        cdk.CfnOutput(
            self,
            "StudioImagesUri",
            value=f"s3://{storage.bucket_name}/{layout.LABELING_IMAGES}",
            description="Label Studio's source storage: the images to label",
        )
        cdk.CfnOutput(
            self,
            "StudioExportsUri",
            value=f"s3://{storage.bucket_name}/{layout.STUDIO_EXPORTS}",
            description="Label Studio's target storage: one JSON task per labeled image",
        )
