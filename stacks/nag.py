"""cdk-nag v3 rule packs and the one way this project acknowledges a finding.

Every acknowledgment names one finding on one construct and says why it is
acceptable *there*; `make audit` lists them all for reviewers.
"""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, NagPack, ServerlessChecks
from constructs import IConstruct


def rule_packs(scope: IConstruct) -> list[NagPack]:
    """The packs every stack must pass: AWS Solutions and Serverless."""
    return [AwsSolutionsChecks(scope), ServerlessChecks(scope)]


def register_rule_packs(app: cdk.App) -> None:
    cdk.Validations.of(app).add_plugins(*rule_packs(app))


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """Accept one finding on ``construct`` (and its children) with a specific reason."""
    pack = rule.split("-", 1)[0]  # "AwsSolutions-S1" is reported by the AwsSolutions pack
    cdk.Validations.of(construct).acknowledge(
        cdk.Acknowledgment(id=f"{pack}::{rule}", reason=reason)
    )
