"""cdk-nag AwsSolutions and Serverless packs: zero unacknowledged findings, warnings included."""

from __future__ import annotations

import aws_cdk as cdk
import pytest

from stacks.nag import rule_packs
from tests.infra.configurations import CONFIGURATIONS
from tests.infra.synth import build_app

pytestmark = pytest.mark.synth  # every test here builds the CDK app


def findings(app) -> list[str]:
    # Synthesize first, as `cdk synth` does before validating: cross-stack references
    # become imports then, and findings name resources the way the CLI reports them.
    app.synth()
    found = []
    for pack in rule_packs(app):
        for violation in pack.validate_scope(app).violations:
            found.extend(
                f"{violation.rule_name} ({violation.severity}) at {resource.construct_path}"
                for resource in violation.violating_resources
            )
    return sorted(found)


def acknowledgments(app) -> dict[str, str]:
    """Every acknowledged rule, as "construct path: rule id" -> reason."""
    found = {}
    for construct in app.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                for rule, reason in entry.data.items():
                    found[f"{construct.node.path}: {rule}"] = reason
    return found


@pytest.mark.parametrize("context", CONFIGURATIONS.values(), ids=CONFIGURATIONS.keys())
def test_the_whole_app_has_no_unacknowledged_findings(context):
    assert findings(build_app(rule_packs=False, **context)[0]) == []


@pytest.mark.parametrize("context", CONFIGURATIONS.values(), ids=CONFIGURATIONS.keys())
def test_every_acknowledgment_hides_a_real_finding(context, monkeypatch):
    # The gate is live and no acknowledgment is stale: with acknowledgments switched
    # off, each acknowledged rule is reported on (a child of) the acknowledged construct.
    acknowledged = acknowledgments(build_app(**context)[0])
    monkeypatch.setattr(cdk.Validations, "acknowledge", lambda _self, *_rules: None)
    reported = findings(build_app(rule_packs=False, **context)[0])

    for place in acknowledged:
        path, rule = place.split(": ")
        if rule.startswith("CloudFormation-Validate::"):
            continue  # CDK's own, on template checks no rule pack runs (a VPC's AZs, flow logs)
        rule_id = rule.removeprefix("Annotation::")
        assert any(
            line.startswith(f"{rule_id} (") and line.split(" at ")[1].startswith(path)
            for line in reported
        ), f"{place} acknowledges nothing"


def test_every_acknowledgment_gives_a_reason_specific_to_its_resource():
    app, _ = build_app(**CONFIGURATIONS["everything on"])
    reasons = acknowledgments(app)
    for place, reason in reasons.items():
        assert len(reason.split()) >= 8, f"{place}: reason too short to be specific: {reason!r}"
    # One reason copied onto unrelated resources is a sign nobody looked (one construct may
    # use a reason for two packs' versions of the same rule).
    places_by_reason: dict[str, set[str]] = {}
    for place, reason in reasons.items():
        places_by_reason.setdefault(reason, set()).add(place.split(": ")[0])
    for reason, places in places_by_reason.items():
        assert len(places) == 1, f"{reason!r} is used for {sorted(places)}"
