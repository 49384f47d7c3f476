"""`make audit`: the committed report is current, deterministic, and answers the questions."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.infra.synth import synth_templates
from tools.audit import report

pytestmark = pytest.mark.synth  # every test here builds the CDK app


@pytest.fixture(scope="module")
def assembly(tmp_path_factory) -> Path:
    outdir = tmp_path_factory.mktemp("cdk.out")
    synth_templates(outdir)
    return outdir


def test_the_report_is_byte_identical_between_runs(assembly, tmp_path):
    synth_templates(tmp_path)
    assert report(assembly) == report(tmp_path)


def test_the_committed_report_is_current(assembly):
    committed = (ROOT / "audit" / "report.md").read_text()
    assert report(assembly) == committed, "audit/report.md is stale: run `make audit`"


def test_the_report_names_who_can_do_what_to_which_data(assembly):
    text = report(assembly)
    assert "#### Role `CounterRole" in text
    assert "| Allow | sagemaker:InvokeEndpoint |" in text
    assert 'Trusted by: {"Service": "lambda.amazonaws.com"}' in text
    # The dev stage's data bucket: deleted with the stage (cdk.json), versioned.
    assert "| aws:kms | all blocked | yes | on delete: Delete, versioned" in text
    # Only bulk runs' tiles expire, not the data.
    assert "old versions expire after 30 d, objects under bulk/tiles/ expire after 3 d |" in text
    assert "| `AwsSolutions-DDB3` | Idempotency records expire" in text


def section(text: str, stack: str, heading: str) -> list[str]:
    """The lines of one ``### heading`` of one stack's part of the report."""
    part = text.partition(f"## Stack `object-counting-dev-{stack}`\n")[2]
    part = part.partition("\n## Stack")[0].partition(f"### {heading}\n")[2]
    return part.partition("\n### ")[0].splitlines()


def test_the_report_lists_resource_policies_sorted(assembly):
    policies = section(report(assembly), "counting", "Resource policies")
    header = "| Protects | Policy | Effect | Principal | Actions | Resources | Conditions |"
    assert header in policies
    rows = [line for line in policies if line.startswith("| `")]
    assert len(rows) == 5  # TLS-only denies on three queues; EventBridge to two of them
    assert rows == sorted(rows)


def test_eventbridge_may_send_to_the_intake_queue_only_from_this_account(assembly):
    (intake,) = [
        line
        for line in section(report(assembly), "counting", "Resource policies")
        if line.startswith("| `<IntakeQueue") and "| Allow |" in line
    ]
    assert "| Service: events.amazonaws.com |" in intake
    assert "sqs:SendMessage" in intake
    assert "| StringEquals aws:SourceAccount = <AWS::AccountId> |" in intake


def test_the_report_lists_key_and_bucket_policies_and_lambda_permissions(tmp_path):
    # The labeling launcher's invoke permissions: a stage with the workforce (off by default).
    synth_templates(tmp_path, **{"counting.workforce.enabled": "true"})
    text = report(tmp_path)
    storage = "\n".join(section(text, "storage", "Resource policies"))
    assert "| `<StorageDataKey" in storage
    assert "| Deny | AWS: * | s3:* |" in storage
    assert "| Bool aws:SecureTransport = false |" in storage
    permissions = [
        line
        for line in section(text, "labeling", "Resource policies")
        if "lambda:InvokeFunction" in line
    ]
    assert len(permissions) == 2  # the request rule and the completion rule
    for line in permissions:
        assert "| Allow | Service: events.amazonaws.com |" in line
        assert "| SourceArn = <Jobs" in line
    assert section(text, "monitoring", "Resource policies") == ["", "None."]


@pytest.mark.parametrize(
    ("instance_type", "storage"),
    [
        ("ml.p3.2xlarge", "EBS volume, KMS (customer key"),
        ("ml.g5.2xlarge", "the instance's NVMe storage, encrypted by the instance's hardware"),
    ],
)
def test_the_report_says_how_training_storage_is_encrypted(tmp_path, instance_type, storage):
    synth_templates(tmp_path, **{"counting.training.instance_type": instance_type})
    (row,) = [
        line
        for line in section(report(tmp_path), "training", "Training job storage")
        if line.startswith("| `Pipeline")
    ]
    assert f"| `Train` | `{instance_type}` | {storage}" in row
