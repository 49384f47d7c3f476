"""Whole-app template checks: cfn-lint clean and byte-identical between synths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.configurations import CONFIGURATIONS
from tests.infra.synth import synth_templates


@pytest.fixture(scope="module")
def assembly_dir(tmp_path_factory) -> Path:
    outdir = tmp_path_factory.mktemp("cdk.out")
    synth_templates(outdir)
    return outdir


def test_every_stack_has_a_template(assembly_dir):
    names = sorted(path.name for path in assembly_dir.glob("*.template.json"))
    assert names == [
        f"object-counting-dev-{stack}.template.json"
        for stack in ("alerts", "counting", "labeling", "monitoring", "storage", "workforce")
    ]


@pytest.mark.parametrize("context", CONFIGURATIONS.values(), ids=CONFIGURATIONS.keys())
def test_cfn_lint_reports_no_errors(context, tmp_path):
    synth_templates(tmp_path, **context)
    templates = sorted(str(path) for path in tmp_path.glob("*.template.json"))
    result = subprocess.run(
        [sys.executable, "-m", "cfnlint", "--format", "parseable", *templates],
        capture_output=True,
        text=True,
        check=False,
    )
    # cfn-lint's exit status is a bit field: 2 = errors, 4 = warnings, 8 = informational.
    errors = [line for line in result.stdout.splitlines() if ":E" in line]
    assert not errors, result.stdout
    assert result.returncode & 2 == 0, result.stdout + result.stderr


def test_two_synths_produce_byte_identical_templates(assembly_dir, tmp_path):
    synth_templates(tmp_path)
    first = {path.name: path.read_bytes() for path in assembly_dir.glob("*.template.json")}
    second = {path.name: path.read_bytes() for path in tmp_path.glob("*.template.json")}
    assert first == second
