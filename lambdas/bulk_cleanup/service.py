"""Delete the model copy a bulk run leaves when its state machine could not.

Each run registers the active model's container and artifacts as a model named after the run
(``<prefix>-bulk-<id>``) and deletes it once the transform has ended. A run stopped by hand,
one past ``bulk.timeout_hours``, or one whose own DeleteModel failed after its retries leaves
the copy: the first two run no Catch. Step Functions announces every ended execution on the
default event bus; this service reads that execution's run name from its history (the
``NameRun`` state's output: the name is made inside the run, never taken from its input) and
deletes the model of exactly that name when ListModels still lists it. Asking ListModels
first means a run whose copy is gone, or was never made, needs no error name: DeleteModel's
answer for a missing model is not documented (botocore's model lists no errors for it).

Only names that are the run prefix and an 8-digit run id are deleted; anything else the
history might hold is refused. The events are delivered best effort: a copy whose event was
lost is still listed by ``counting stage teardown``.
https://docs.aws.amazon.com/step-functions/latest/apireference/API_GetExecutionHistory.html
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ListModels.html
"""

from __future__ import annotations

import json
from typing import Any

from counting_core.contracts.bulk_cleanup import (
    NAME_RUN_STATE,
    RUN_FIELD,
    CleanupReport,
    Environment,
)
from counting_core.contracts.events import ExecutionEnded


class NotARunName(Exception):
    """The history names a run that is not "<prefix>-bulk-<id>": nothing is deleted."""


class RunCleanup:
    def __init__(self, environment: Environment, *, stepfunctions: Any, sagemaker: Any) -> None:
        self._environment = environment
        self._stepfunctions = stepfunctions
        self._sagemaker = sagemaker

    def clean(self, event: ExecutionEnded) -> CleanupReport:
        detail = event.detail
        run = self._run_name(detail.execution_arn)
        deleted = False
        if run is not None:
            if not self._environment.is_run_name(run):
                raise NotARunName(
                    f"{detail.execution_arn}: {NAME_RUN_STATE} named the run {run!r}, not "
                    f"{self._environment.run_name_prefix}<8 hex digits>; nothing deleted"
                )
            if self._listed(run):
                self._sagemaker.delete_model(ModelName=run)
                deleted = True
        return CleanupReport(
            execution_arn=detail.execution_arn, status=detail.status, run=run, deleted=deleted
        )

    def _run_name(self, execution_arn: str) -> str | None:
        """The run name NameRun gave the execution; None if it never left that state. The
        history is read from the start, and NameRun is the second state: the first page."""
        pages = self._stepfunctions.get_paginator("get_execution_history").paginate(
            executionArn=execution_arn, includeExecutionData=True
        )
        for page in pages:
            for event in page["events"]:
                exited = event.get("stateExitedEventDetails")
                if exited and exited["name"] == NAME_RUN_STATE:
                    return str(json.loads(exited["output"])[RUN_FIELD])
        return None

    def _listed(self, model_name: str) -> bool:
        # NameContains narrows the listing to the run's name (and any longer one).
        pages = self._sagemaker.get_paginator("list_models").paginate(NameContains=model_name)
        return any(model["ModelName"] == model_name for page in pages for model in page["Models"])
