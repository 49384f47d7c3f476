"""Shared fixtures: the CDK app built exactly as `cdk synth` builds it, without AWS."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# jsii runs Node.js from PATH: prefer the virtualenv's Node 24 over the machine's Node 20.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch):
    """Any boto3 client a test forgets to mock fails on fake credentials, never reaches AWS."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def cdk_context(**overrides) -> dict:
    """The context `cdk synth` would see: cdk.json's, plus `-c` style overrides."""
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    context.update(overrides)
    return context
