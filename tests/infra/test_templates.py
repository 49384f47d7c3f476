"""Whole-app template checks: cfn-lint clean and byte-identical between synths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.configurations import CONFIGURATIONS
from tests.infra.synth import synth_templates

pytestmark = pytest.mark.synth  # every test here builds the CDK app


@pytest.fixture(scope="module")
def assembly_dir(tmp_path_factory) -> Path:
    outdir = tmp_path_factory.mktemp("cdk.out")
    synth_templates(outdir)
    return outdir


def test_every_stack_has_a_template(assembly_dir):
    names = sorted(path.name for path in assembly_dir.glob("*.template.json"))
    assert names == [
        f"object-counting-dev-{stack}.template.json"
        # The workforce and labeling stacks only with workforce.enabled (off by default).
        for stack in ("alerts", "bulk-counting", "counting", "monitoring", "storage", "training")
    ]


@pytest.mark.parametrize("context", CONFIGURATIONS.values(), ids=CONFIGURATIONS.keys())
def test_cfn_lint_reports_no_errors(context, tmp_path):
    synth_templates(tmp_path, **context)
    templates = sorted(str(path) for path in tmp_path.glob("*.template.json"))
    # The console script: cfn-lint has no ``python -m cfnlint`` entry point.
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [cfn_lint, "--format", "parseable", *templates], capture_output=True, text=True, check=False
    )
    # cfn-lint's exit status is a bit field: 1 = it could not lint, 2 = errors, 4 = warnings.
    assert result.returncode & 0b11 == 0, result.stdout + result.stderr
    assert [line for line in result.stdout.splitlines() if ":E" in line] == []
    assert len(templates) >= 5  # storage, alerts, counting, training, monitoring


def test_two_synths_produce_byte_identical_templates(assembly_dir, tmp_path):
    synth_templates(tmp_path)
    first = {path.name: path.read_bytes() for path in assembly_dir.glob("*.template.json")}
    second = {path.name: path.read_bytes() for path in tmp_path.glob("*.template.json")}
    assert first == second
