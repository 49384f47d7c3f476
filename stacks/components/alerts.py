"""One encrypted topic for every alarm and pipeline notification."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from stacks.nag import acknowledge


class AlertsTopic(Construct):
    """Attributes:
    topic: KMS-encrypted, TLS-only; alarms and the training pipeline publish here.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, key: kms.IKey, emails: tuple[str, ...]
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name="Object counting alerts",
            master_key=key,
            enforce_ssl=True,
        )
        # The topic policy replaces SNS's default one, so CloudWatch alarms need their own
        # grant; only alarms of this account may publish (confused-deputy protection).
        # https://docs.aws.amazon.com/sns/latest/dg/sns-access-policy-use-cases.html
        stack = cdk.Stack.of(self)
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmsOfThisAccount",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(
                            service="cloudwatch",
                            resource="alarm",
                            resource_name="*",
                            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                        )
                    },
                },
            )
        )
        for email in emails:
            subscription = self.topic.add_subscription(subscriptions.EmailSubscription(email))
            acknowledge(
                subscription,
                "Serverless-SNSRedrivePolicy",
                f"Alert emails to {email}: a dead-letter queue for undelivered alert mail "
                "would need its own alarm, which could only send more mail.",
            )
