"""Stages are explicit settings: prod protects what holds data; everything is tagged."""

from __future__ import annotations

from aws_cdk.assertions import Match, Template

from tests.infra.synth import build_app


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
