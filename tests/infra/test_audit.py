"""`make audit`: the committed report is current, deterministic, and answers the questions."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.infra.synth import synth_templates
from tools.audit import report


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
    assert "| aws:kms | all blocked | yes | on delete: Retain, versioned" in text
    assert "| `AwsSolutions-DDB3` | Idempotency records expire" in text
