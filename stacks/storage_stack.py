"""Data at rest: the KMS key and the buckets every other stack reads and writes."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from counting_core.counts import bulk
from stacks.components.storage import DataStorage
from stacks.config import AppConfig


class StorageStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.storage = DataStorage(
            self,
            "Storage",
            prefix=config.prefix,
            settings=config.storage,
            tiles_kept_days=bulk.tiles_kept_days(config.bulk.timeout_hours),
        )
        cdk.CfnOutput(self, "DataBucketName", value=self.storage.bucket.bucket_name)
        cdk.CfnOutput(self, "DataKeyArn", value=self.storage.key.key_arn)
