"""Stages are explicit settings: prod protects what holds data; everything is tagged."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match, Template

from tests.infra.synth import build_app

pytestmark = pytest.mark.synth  # every test here builds the CDK app

# The workforce (off by default) holds the labelers' user pool, a store of data too.
WITH_WORKFORCE = {"counting.workforce.enabled": "true"}


def test_prod_protects_stateful_stacks_and_retains_data():
    _, stacks = build_app(stage="prod", **WITH_WORKFORCE)
    assert stacks["storage"].termination_protection
    assert stacks["counting"].termination_protection
    assert not stacks["alerts"].termination_protection
    assert stacks["storage"].stack_name == "object-counting-prod-storage"
    storage = Template.from_stack(stacks["storage"])
    for bucket in storage.find_resources("AWS::S3::Bucket").values():
        assert bucket["DeletionPolicy"] == "Retain"
    storage.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "Tags": Match.array_with(
                [
                    {"Key": "cost-centre", "Value": "object-counting"},
                    {"Key": "project", "Value": "object-counting"},
                    {"Key": "stage", "Value": "prod"},
                ]
            )
        },
    )


# What holds data, per stage: (resource type, stack) -> DeletionPolicy in dev and in prod.
# cdk.json sets storage.removal_policy to "destroy" for dev; prod keeps the default "retain".
STATEFUL = [
    ("AWS::S3::Bucket", "storage"),
    ("AWS::KMS::Key", "storage"),
    ("AWS::DynamoDB::Table", "counting"),
    ("AWS::Cognito::UserPool", "workforce"),
    ("AWS::Logs::LogGroup", "training"),
    ("AWS::Logs::LogGroup", "counting"),
]


def deletion_policies(stacks, resource_type, stack):
    found = Template.from_stack(stacks[stack]).find_resources(resource_type)
    return {resource.get("DeletionPolicy", "Delete") for resource in found.values()}


def test_make_destroy_removes_a_dev_stage_so_it_can_be_deployed_again_under_its_names():
    _, stacks = build_app(**WITH_WORKFORCE)
    assert not stacks["storage"].termination_protection
    # The idempotency table is always deleted; the results table follows the stage.
    assert deletion_policies(stacks, "AWS::DynamoDB::Table", "counting") == {"Delete"}
    for resource_type, stack in STATEFUL:
        assert deletion_policies(stacks, resource_type, stack) == {"Delete"}, resource_type
    storage = Template.from_stack(stacks["storage"])
    # Both buckets are emptied (every version) before CloudFormation deletes them.
    assert len(storage.find_resources("Custom::S3AutoDeleteObjects")) == 2
    storage.has_resource_properties("AWS::KMS::Key", {"PendingWindowInDays": 7})
    counting = Template.from_stack(stacks["counting"])
    counting.has_resource_properties(
        "AWS::DynamoDB::Table", {"KeySchema": Match.any_value(), "DeletionProtectionEnabled": False}
    )


def test_prod_keeps_every_store_of_data_and_protects_the_results_table():
    _, stacks = build_app(stage="prod", **WITH_WORKFORCE)
    for resource_type, stack in STATEFUL[:2] + STATEFUL[3:]:
        assert deletion_policies(stacks, resource_type, stack) == {"Retain"}, resource_type
    storage = Template.from_stack(stacks["storage"])
    assert storage.find_resources("Custom::S3AutoDeleteObjects") == {}
    assert "PendingWindowInDays" not in str(storage.find_resources("AWS::KMS::Key"))
    counting = Template.from_stack(stacks["counting"])
    counting.has_resource("AWS::DynamoDB::Table", {"DeletionPolicy": "Retain"})
    counting.has_resource_properties("AWS::DynamoDB::Table", {"DeletionProtectionEnabled": True})


def test_every_tagged_resource_of_every_stack_carries_project_stage_and_cost_centre():
    _, stacks = build_app(**WITH_WORKFORCE)
    expected = {"project": "object-counting", "stage": "dev", "cost-centre": "object-counting"}
    tagged = 0
    for stack in stacks.values():
        for logical_id, resource in Template.from_stack(stack).to_json()["Resources"].items():
            tags = resource.get("Properties", {}).get("Tags")
            if isinstance(tags, list):
                tagged += 1
                found = {tag["Key"]: tag["Value"] for tag in tags}
                assert expected.items() <= found.items(), f"{stack.stack_name}/{logical_id}"
        # Stack tags: CloudFormation also puts them on every resource it creates.
        assert expected.items() <= stack.tags.tag_values().items(), stack.stack_name
    assert tagged >= 20


@pytest.mark.parametrize(("setting", "policy"), [("retain", "Retain"), ("destroy", "Delete")])
def test_log_groups_are_kept_or_deleted_with_the_data(setting, policy):
    _, stacks = build_app(**{"counting.storage.removal_policy": setting, **WITH_WORKFORCE})
    log_groups = [
        resource
        for stack in stacks.values()
        for resource in Template.from_stack(stack).find_resources("AWS::Logs::LogGroup").values()
    ]
    assert len(log_groups) >= 4
    assert {resource["DeletionPolicy"] for resource in log_groups} == {policy}
