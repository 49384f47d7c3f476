"""Snapshots of what a reviewer reads in an infrastructure change: the state machines.

Each state machine's definition is kept as the Amazon States Language it deploys
(``Fn::Join`` and references resolved as tests/stepfunctions/template.py does, with its
stand-in account and Region), one file per stack that has one, so that a change to a
workflow shows in review as a readable diff.

Why only these, not every template whole: the rest of a reviewer's questions already have a
reviewed, committed answer that a test keeps current. Who may do what (IAM roles and resource
policies), how each data store is kept, the resources of each type and every accepted cdk-nag
finding are in audit/report.md (tests/infra/test_audit.py fails when it is stale); the
properties that matter are asserted one by one in the stack and component tests; cdk-nag,
cfn-lint and checkov run over every configuration. Whole-template snapshots repeated all that
as 400 KB of JSON in which a definition was one escaped string. Asset hashes (64 hex digits)
are masked so that a code-only change does not churn them. After an intended change, refresh
with `make snapshots` and commit the diff with the change.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.infra.synth import synth_templates
from tests.stepfunctions.template import Templates

pytestmark = pytest.mark.synth  # every test here builds the CDK app

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots"
ASSET_HASH = re.compile(r"[0-9a-f]{64}")
# The built-in algorithm's training stack too (`-c counting.training.algorithm=builtin`): it
# must stay what it was before torchvision became the default.
BUILTIN = {"counting.training.algorithm": "builtin"}
BUILTIN_TRAINING = "object-counting-dev-training"
BUILTIN_SNAPSHOT = f"{BUILTIN_TRAINING}.builtin"
# With counter.tiling not off, the evaluation counts the validation images in tiles too: the
# cut loop and the tile transform are states only that stack has.
TILED = {"counting.counter.tiling.mode": "auto"}
TILED_SNAPSHOT = f"{BUILTIN_TRAINING}.tiled"


def state_machines(templates: Templates, stack: str) -> dict[str, dict]:
    """The definitions of the state machines in ``stack``, by logical id."""
    return {
        name: json.loads(templates.resolve(stack, machine["Properties"]["DefinitionString"]))
        for name, machine in templates.resources(stack, "AWS::StepFunctions::StateMachine").items()
    }


def masked(definitions: dict[str, dict]) -> str:
    return ASSET_HASH.sub("<asset-hash>", json.dumps(definitions, indent=1, sort_keys=True)) + "\n"


def snapshots(templates: Templates) -> dict[str, str]:
    return {
        stack: masked(definitions)
        for stack in templates.stacks()
        if (definitions := state_machines(templates, stack))
    }


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, str]:
    synthesized = snapshots(Templates(synth_templates(tmp_path_factory.mktemp("cdk.out"))))
    builtin = snapshots(Templates(synth_templates(tmp_path_factory.mktemp("cdk.out"), **BUILTIN)))
    tiled = snapshots(Templates(synth_templates(tmp_path_factory.mktemp("cdk.out"), **TILED)))
    return {
        **synthesized,
        BUILTIN_SNAPSHOT: builtin[BUILTIN_TRAINING],
        TILED_SNAPSHOT: tiled[BUILTIN_TRAINING],
    }


def test_every_state_machine_has_a_snapshot(templates):
    if os.environ.get("UPDATE_SNAPSHOTS"):
        for stale in SNAPSHOTS.glob("*.json"):
            stale.unlink()
        for name, text in templates.items():
            (SNAPSHOTS / f"{name}.json").write_text(text)
    assert sorted(path.stem for path in SNAPSHOTS.glob("*.json")) == [
        "object-counting-dev-bulk-counting",
        "object-counting-dev-training",
        "object-counting-dev-training.builtin",
        "object-counting-dev-training.tiled",
    ]
    assert sorted(path.stem for path in SNAPSHOTS.glob("*.json")) == sorted(templates)


def test_state_machines_match_their_snapshots(templates):
    for name, text in templates.items():
        expected = (SNAPSHOTS / f"{name}.json").read_text()
        assert text == expected, f"{name} changed: review it, then run `make snapshots`"
