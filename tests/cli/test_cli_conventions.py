"""What every command line is expected to do: help when called bare, a version, quiet pipes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import counting
from tests.conftest import ROOT, RunCli


def test_no_arguments_print_the_help_and_status_2(cli: RunCli, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["counting"])

    status, out, err = cli()

    assert status == 2
    assert out.startswith("usage: counting [-h] [--version]")
    assert "{count,invoke,manifest,labeling,train,evaluate,bulk" in out
    assert err == ""


def test_version_is_the_installed_distributions(capsys):
    with pytest.raises(SystemExit) as stopped:
        counting.main(["--version"])

    # pyproject.toml's [project] version, installed by `pip install -e .` in make test.
    assert (stopped.value.code, capsys.readouterr().out) == (0, "counting 0.1.0\n")


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path):
    # `counting count ... | head -c 1`. 2,000 detections print far more than a pipe holds
    # (64 KiB on Linux), so the write fails however early or late the reader leaves.
    response = tmp_path / "response.json"
    response.write_text(json.dumps({"prediction": [[0, 0.9, 0.1, 0.1, 0.2, 0.2]] * 2000}))
    command = [sys.executable, "-m", "counting", "count", str(response)]
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdout.close()
        err = process.stderr.read()
        status = process.wait(timeout=60)

    assert (status, err) == (141, b"")
