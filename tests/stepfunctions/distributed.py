"""Running a definition with Distributed Map states, and its Lambdas, in moto's interpreter.

What moto 5.2.5's interpreter does with a Distributed Map: it reads the items with the
state's ``ItemReader`` (``s3:listObjectsV2`` against moto's S3, first page only), runs
one child execution per item (``ItemSelector`` applied), and writes a ResultWriter
manifest. What it does not, and what ``for_interpreter`` therefore changes in a copy of
the synthesized definition:

- ``ItemBatcher`` is not in its grammar: it is replaced by an ``ItemSelector`` that hands
  each child the batch shape ``{"Items": [item], "BatchInput": {...}}``, so every batch
  holds one item. Batches of many items are exercised by the Lambda's own tests.
- ``ToleratedFailurePercentage`` parses only as a decimal (``5.0``) and is not enforced:
  a failed child never fails the map. Tolerance is asserted on the template only.
- ResultWriter result files are not written (only the manifest).

Nothing else is changed. ``lambdas_in_process`` runs Lambda tasks by calling the handler
in this process (a real invocation needs Docker), with moto's AWS behind it, so the
definition and the handler run together as they would in AWS.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

Handler = Callable[[dict[str, Any]], Any]


def for_interpreter(definition: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``definition`` with its Distributed Maps in the form moto can run."""
    converted = copy.deepcopy(definition)
    for state in _states(converted):
        if state.get("Type") != "Map" or "ItemBatcher" not in state:
            continue
        batcher = state.pop("ItemBatcher")
        state["ItemSelector"] = {
            "Items.$": "States.Array($$.Map.Item.Value)",
            "BatchInput": batcher.get("BatchInput", {}),
        }
        if "ToleratedFailurePercentage" in state:
            state["ToleratedFailurePercentage"] = float(state["ToleratedFailurePercentage"])
    return converted


def _states(definition: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for state in definition.get("States", {}).values():
        yield state
        for nested in ("ItemProcessor", "Iterator"):
            if nested in state:
                yield from _states(state[nested])
        for branch in state.get("Branches", ()):
            yield from _states(branch)


@contextmanager
def lambdas_in_process(handler: Handler) -> Iterator[list[dict[str, Any]]]:
    """Every Lambda task calls ``handler(payload)``; yields the payloads, in call order.

    A handler's exception becomes what Lambda returns for an unhandled error, so the
    state's Retry and Catch see ``errorType`` as the error name, as in AWS.
    """
    payloads: list[dict[str, Any]] = []

    def invoke(parameters: dict[str, Any], region: str, state_credentials: Any) -> dict:
        payload = json.loads(parameters["Payload"])
        payloads.append(payload)
        try:
            answer = handler(payload)
        except Exception as error:
            return {
                "StatusCode": 200,
                "FunctionError": "Unhandled",
                "Payload": {"errorType": type(error).__name__, "errorMessage": str(error)},
            }
        return {"StatusCode": 200, "Payload": json.loads(json.dumps(answer))}

    with mock.patch.object(lambda_eval_utils, "_invoke_lambda_function", invoke):
        yield payloads
