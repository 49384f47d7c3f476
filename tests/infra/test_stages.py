"""Stages are explicit settings: prod protects what holds data; everything is tagged."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match, Template

from tests.infra.synth import build_app

pytestmark = pytest.mark.synth  # every test here builds the CDK app


def test_prod_protects_stateful_stacks_and_retains_data():
    _, stacks = build_app(stage="prod")
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


def test_dev_has_no_termination_protection_but_still_retains_data():
    _, stacks = build_app()
    assert not stacks["storage"].termination_protection
    storage = Template.from_stack(stacks["storage"])
    storage.has_resource("AWS::KMS::Key", {"DeletionPolicy": "Retain"})


def test_every_tagged_resource_of_every_stack_carries_project_stage_and_cost_centre():
    _, stacks = build_app()
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
    _, stacks = build_app(**{"counting.storage.removal_policy": setting})
    log_groups = [
        resource
        for stack in stacks.values()
        for resource in Template.from_stack(stack).find_resources("AWS::Logs::LogGroup").values()
    ]
    assert len(log_groups) >= 4
    assert {resource["DeletionPolicy"] for resource in log_groups} == {policy}
