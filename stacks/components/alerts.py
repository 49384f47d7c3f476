"""One encrypted topic for every alarm and pipeline notification."""

from __future__ import annotations

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
        for email in emails:
            subscription = self.topic.add_subscription(subscriptions.EmailSubscription(email))
            acknowledge(
                subscription,
                "Serverless-SNSRedrivePolicy",
                f"Alert emails to {email}: a dead-letter queue for undelivered alert mail "
                "would need its own alarm, which could only send more mail.",
            )
