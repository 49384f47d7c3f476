"""The alerts topic, in a stack of its own: encrypted, subscribing the configured addresses,
open to this account's alarms only."""

from __future__ import annotations

import pytest
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Match, Template

from stacks.components.alerts import AlertsTopic
from tests.infra.synth import component_stack

pytestmark = pytest.mark.synth  # every test here synthesizes a template


@pytest.fixture(scope="module")
def alerts() -> Template:
    stack, config = component_stack(**{"counting.alerts.emails": '["ops@example.com"]'})
    AlertsTopic(stack, "Alerts", key=kms.Key(stack, "Key"), emails=config.alerts.emails)
    return Template.from_stack(stack)


def test_alerts_topic_is_encrypted_and_subscribes_the_configured_emails(alerts):
    alerts.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    alerts.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"}
    )


def test_only_this_accounts_alarms_may_publish_to_the_alerts_topic(alerts):
    alerts.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Sid": "AlarmsOfThisAccount",
                                "Effect": "Allow",
                                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                "Action": "sns:Publish",
                                "Condition": {
                                    "StringEquals": {
                                        "aws:SourceAccount": {"Ref": "AWS::AccountId"}
                                    },
                                    "ArnLike": {"aws:SourceArn": Match.any_value()},
                                },
                            }
                        )
                    ]
                )
            }
        },
    )
