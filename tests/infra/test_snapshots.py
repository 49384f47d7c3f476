"""Snapshots of every stack's template, so any infrastructure change shows up in review.

These sit on top of the specific assertions in the other test modules. Asset hashes
(64 hex digits) are masked so that a code-only change does not churn them. After an
intended change, refresh with `make snapshots` and commit the diff with the change.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.infra.synth import synth_templates

pytestmark = pytest.mark.synth  # every test here builds the CDK app

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots"
ASSET_HASH = re.compile(r"[0-9a-f]{64}")
# The built-in algorithm's training stack too (`-c counting.training.algorithm=builtin`): it
# must stay what it was before torchvision became the default.
BUILTIN = {"counting.training.algorithm": "builtin"}
BUILTIN_TRAINING = "object-counting-dev-training"
BUILTIN_SNAPSHOT = f"{BUILTIN_TRAINING}.builtin"


def masked(template: dict) -> str:
    return ASSET_HASH.sub("<asset-hash>", json.dumps(template, indent=1, sort_keys=True)) + "\n"


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, str]:
    synthesized = synth_templates(tmp_path_factory.mktemp("cdk.out"))
    builtin = synth_templates(tmp_path_factory.mktemp("cdk.out"), **BUILTIN)
    return {
        **{name: masked(template) for name, template in synthesized.items()},
        BUILTIN_SNAPSHOT: masked(builtin[BUILTIN_TRAINING]),
    }


def test_every_stack_has_a_snapshot(templates):
    if os.environ.get("UPDATE_SNAPSHOTS"):
        for stale in SNAPSHOTS.glob("*.json"):
            stale.unlink()
        for name, text in templates.items():
            (SNAPSHOTS / f"{name}.json").write_text(text)
    assert sorted(path.stem for path in SNAPSHOTS.glob("*.json")) == sorted(templates)


def test_templates_match_their_snapshots(templates):
    for name, text in templates.items():
        expected = (SNAPSHOTS / f"{name}.json").read_text()
        assert text == expected, f"{name} changed: review it, then run `make snapshots`"
