"""Composes the app's stacks from one validated configuration."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from stacks.alerts_stack import AlertsStack
from stacks.bulk_stack import BulkCountingStack
from stacks.components.storage import REMOVAL_POLICIES
from stacks.config import AppConfig
from stacks.counting_stack import CountingStack
from stacks.labeling_stack import LabelingStack
from stacks.monitoring_stack import MonitoringStack
from stacks.storage_stack import StorageStack
from stacks.studio_stack import StudioStack
from stacks.training_stack import TrainingStack
from stacks.workforce_stack import WorkforceStack


def apply_stage_policies(scope: Construct, config: AppConfig) -> None:
    """What holds for every resource under ``scope``, whichever stack made it: the stage's
    tags, and the removal policy of what records the stage's work."""
    # Log groups are the record of what ran, counted and failed, and the user pool holds the
    # labelers' accounts: they are kept or deleted with the data (storage.removal_policy),
    # whatever each construct's default.
    cdk.RemovalPolicies.of(scope).apply(
        REMOVAL_POLICIES[config.storage.removal_policy],
        apply_to_resource_types=["AWS::Logs::LogGroup", "AWS::Cognito::UserPool"],
    )
    for key, value in config.resource_tags.items():
        cdk.Tags.of(scope).add(key, value)


def build(app: cdk.App, config: AppConfig) -> dict[str, cdk.Stack]:
    """Add every stack of the configured stage to ``app``; return them by short name."""
    env = cdk.Environment(account=config.account, region=config.region)
    # Stacks whose deletion would lose data carry termination protection where configured.
    protect = config.termination_protection
    storage = StorageStack(
        app,
        f"{config.prefix}-storage",
        config=config,
        description="Object counting: KMS key, data bucket and access logs",
        env=env,
        termination_protection=protect,
    )
    alerts = AlertsStack(
        app,
        f"{config.prefix}-alerts",
        config=config,
        storage=storage.storage,
        description="Object counting: the topic every alarm and notification goes to",
        env=env,
    )
    counting = CountingStack(
        app,
        f"{config.prefix}-counting",
        config=config,
        storage=storage.storage,
        description="Object counting: S3 uploads to counts, results and annotated images",
        env=env,
        termination_protection=protect,
    )
    workforce: WorkforceStack | None = None
    labeling: LabelingStack | None = None
    if config.workforce.enabled:
        workforce = WorkforceStack(
            app,
            f"{config.prefix}-workforce",
            config=config,
            storage=storage.storage,
            description="Object counting: labeling workforce (Cognito) and private work team",
            env=env,
            termination_protection=protect,
        )
        labeling = LabelingStack(
            app,
            f"{config.prefix}-labeling",
            config=config,
            storage=storage.storage,
            workteam_arn=workforce.workforce.workteam_arn,
            description="Object counting: Ground Truth labeling jobs from requests uploaded to S3",
            env=env,
        )
    studio: StudioStack | None = None
    if config.labeling.studio.enabled:
        studio = StudioStack(
            app,
            f"{config.prefix}-studio",
            config=config,
            storage=storage.storage,
            topic=alerts.alerts.topic,
            description="Object counting: Label Studio behind Cognito sign-in, on the data bucket",
            env=env,
            termination_protection=protect,
        )
    training = TrainingStack(
        app,
        f"{config.prefix}-training",
        config=config,
        storage=storage.storage,
        topic=alerts.alerts.topic,
        description="Object counting: a labeled manifest to a live serverless endpoint",
        env=env,
    )
    bulk = BulkCountingStack(
        app,
        f"{config.prefix}-bulk-counting",
        config=config,
        storage=storage.storage,
        results_table=counting.results.table,
        topic=alerts.alerts.topic,
        description="Object counting: images already in S3 counted on Batch Transform",
        env=env,
    )
    monitoring = MonitoringStack(
        app,
        f"{config.prefix}-monitoring",
        config=config,
        topic=alerts.alerts.topic,
        counting=counting,
        training=training,
        labeling=labeling,
        bulk=bulk,
        description="Object counting: dashboard and alarms",
        env=env,
    )

    apply_stage_policies(app, config)
    stacks: dict[str, cdk.Stack | None] = {
        "storage": storage,
        "alerts": alerts,
        "counting": counting,
        "workforce": workforce,
        "labeling": labeling,
        "studio": studio,
        "training": training,
        "bulk": bulk,
        "monitoring": monitoring,
    }
    return {name: stack for name, stack in stacks.items() if stack is not None}
