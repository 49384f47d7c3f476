"""Every way the training state machine can fail ends in the stop report.

Walked on the synthesized definition of every configuration: a Task, Map or Parallel
state must catch every error (``States.ALL``) into a path that reaches ``NotifyStopped``
and then ``RunStopped``; a Choice must have a Default (no rule matching is an error no
Catch handles); and the one Fail state is ``RunStopped``, reached only from there.
https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from tests.contracts.conftest import synthesized

pytestmark = pytest.mark.synth  # every test here builds the CDK app

MACHINE = "object-counting-dev-training"
NOTIFY = "NotifyStopped"
FAIL = "RunStopped"
CAN_FAIL = ("Task", "Map", "Parallel")
# Failures a run recovers from by design, each caught into the one state named here: the
# active model's transform (a champion that cannot run leaves the run to its count gate,
# docs/training.md "Champion and challenger").
RECOVERED = {"PredictWithChampion": "ChampionUnavailable"}


def training_definition(templates) -> dict[str, Any]:
    stack = next(name for name in templates.stacks() if name.endswith("-training"))
    return templates.definition(stack)


def successors(state: Mapping[str, Any]) -> Iterator[str]:
    """Where a state goes next when it does not fail."""
    if "Next" in state:
        yield state["Next"]
    for rule in state.get("Choices", []):
        yield rule["Next"]
    if "Default" in state:
        yield state["Default"]


def ends_in_the_report(states: Mapping[str, Any], start: str) -> list[str]:
    """The states from ``start`` that end the run without passing NotifyStopped."""
    escapes, seen, pending = [], set(), [start]
    while pending:
        name = pending.pop()
        if name in seen or name == NOTIFY:
            continue
        seen.add(name)
        state = states[name]
        if state["Type"] in ("Succeed", "Fail") or state.get("End"):
            escapes.append(name)
        pending.extend(successors(state))
    return escapes


def problems(definition: Mapping[str, Any]) -> list[str]:
    states = definition["States"]
    found = []
    for name, state in states.items():
        if state["Type"] in CAN_FAIL and name != NOTIFY:
            catch_all = [
                catch["Next"]
                for catch in state.get("Catch", [])
                if catch["ErrorEquals"] == ["States.ALL"]
            ]
            if not catch_all:
                found.append(f"{name}: catches no States.ALL")
            if name in RECOVERED:
                if catch_all != [RECOVERED[name]]:
                    found.append(f"{name}: recovers through {catch_all}, not {RECOVERED[name]}")
                continue
            for target in catch_all:
                found.extend(
                    f"{name}: its catch reaches {end} without the report"
                    for end in ends_in_the_report(states, target)
                )
        if state["Type"] == "Choice" and "Default" not in state:
            found.append(f"{name}: a Choice without a Default")
        if state["Type"] == "Fail" and name != FAIL:
            found.append(f"{name}: a Fail state other than {FAIL}")
    notify = states[NOTIFY]
    if notify["Next"] != FAIL or [c["Next"] for c in notify.get("Catch", [])] != [FAIL]:
        found.append(f"{NOTIFY}: must go on to {FAIL}, sent or not")
    return found


def test_every_failure_reaches_the_stop_report(templates):
    assert problems(training_definition(templates)) == []


BREAKS = {
    "a task without its catch": lambda states: states["Train"].pop("Catch"),
    "a catch that skips the report": lambda states: states["CreateModel"]["Catch"][-1].update(
        Next="Deployed"
    ),
    "a Choice without a Default": lambda states: states["QualityGate"].pop("Default"),
    "a Fail of its own": lambda states: states.update(Oops={"Type": "Fail", "Error": "Oops"}),
}


@pytest.mark.parametrize("break_it", BREAKS.values(), ids=BREAKS.keys())
def test_the_walk_finds_a_failure_that_escapes(break_it):
    definition = copy.deepcopy(training_definition(synthesized("defaults")))
    break_it(definition["States"])
    assert problems(definition) != []
