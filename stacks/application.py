"""Composes the app's stacks from one validated configuration."""

from __future__ import annotations

import aws_cdk as cdk

from stacks.alerts_stack import AlertsStack
from stacks.components.storage import REMOVAL_POLICIES
from stacks.config import AppConfig
from stacks.counting_stack import CountingStack
from stacks.labeling_stack import LabelingStack
from stacks.monitoring_stack import MonitoringStack
from stacks.storage_stack import StorageStack
from stacks.training_stack import TrainingStack
from stacks.workforce_stack import WorkforceStack


def build(app: cdk.App, config: AppConfig) -> dict[str, cdk.Stack]:
    """Add every stack of the configured stage to ``app``; return them by short name."""
    env = cdk.Environment(account=config.account, region=config.region)
    common = {"env": env}

    # Stacks whose deletion would lose data carry termination protection where configured.
    stateful = {**common, "termination_protection": config.termination_protection}
    storage = StorageStack(
        app,
        f"{config.prefix}-storage",
        config=config,
        description="Object counting: KMS key, data bucket and access logs",
        **stateful,
    )
    stacks: dict[str, cdk.Stack] = {"storage": storage}
    stacks["alerts"] = AlertsStack(
        app,
        f"{config.prefix}-alerts",
        config=config,
        storage=storage.storage,
        description="Object counting: the topic every alarm and notification goes to",
        **common,
    )
    stacks["counting"] = CountingStack(
        app,
        f"{config.prefix}-counting",
        config=config,
        storage=storage.storage,
        description="Object counting: S3 uploads to counts, results and annotated images",
        **stateful,
    )
    if config.workforce.enabled:
        workforce = WorkforceStack(
            app,
            f"{config.prefix}-workforce",
            config=config,
            storage=storage.storage,
            description="Object counting: labeling workforce (Cognito) and private work team",
            **stateful,
        )
        stacks["workforce"] = workforce
        stacks["labeling"] = LabelingStack(
            app,
            f"{config.prefix}-labeling",
            config=config,
            storage=storage.storage,
            workteam_arn=workforce.workforce.workteam_arn,
            description="Object counting: Ground Truth labeling jobs from requests uploaded to S3",
            **common,
        )
    stacks["training"] = TrainingStack(
        app,
        f"{config.prefix}-training",
        config=config,
        storage=storage.storage,
        topic=stacks["alerts"].alerts.topic,
        description="Object counting: a labeled manifest to a live serverless endpoint",
        **common,
    )
    stacks["monitoring"] = MonitoringStack(
        app,
        f"{config.prefix}-monitoring",
        config=config,
        topic=stacks["alerts"].alerts.topic,
        counting=stacks["counting"],
        training=stacks["training"],
        labeling=stacks.get("labeling"),
        description="Object counting: dashboard and alarms",
        **common,
    )

    # Log groups are the record of what ran, counted and failed: they are kept or deleted
    # with the data (storage.removal_policy), whatever each construct's default.
    cdk.RemovalPolicies.of(app).apply(
        REMOVAL_POLICIES[config.storage.removal_policy],
        apply_to_resource_types=["AWS::Logs::LogGroup"],
    )
    tags = {"project": config.project, "stage": config.stage, **config.tags}
    for key, value in sorted(tags.items()):
        cdk.Tags.of(app).add(key, value)
    return stacks
