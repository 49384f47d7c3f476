"""The ``bulk_cleanup`` Lambda's contract with the bulk-counting stack
(``stacks/components/bulk/cleanup.py``): an EventBridge rule hands it each ended execution of
the bulk-counting state machine (``contracts.events.ExecutionEnded``); it reads the run's
name from the execution's history and deletes the run's model copy if one is left.

The state machine's ``NameRun`` state puts the run's name at ``$.run``
(``stacks/components/bulk/pipeline.py``); these names are how the function finds it.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from counting_core.contracts.environment import FunctionEnvironment

#: The state that names a run, and the field of its output that holds the name.
NAME_RUN_STATE = "NameRun"
RUN_FIELD = "run"
#: What NameRun appends to "<prefix>-bulk-": the first group of a UUID, 8 hex digits.
RUN_ID = re.compile(r"[0-9a-f]{8}")


def run_name_prefix(prefix: str) -> str:
    """What every bulk run's name (its transform job's and model copy's) starts with."""
    return f"{prefix}-bulk-"


class Environment(FunctionEnvironment):
    # "<prefix>-bulk-": the function deletes no model whose name is not this and a run id.
    run_name_prefix: str = Field(alias="RUN_NAME_PREFIX", pattern=r"^[a-z][a-z0-9-]*-bulk-$")

    def is_run_name(self, name: str) -> bool:
        """Whether ``name`` is a run's name: the prefix and a run id, nothing more."""
        return name.startswith(self.run_name_prefix) and bool(
            RUN_ID.fullmatch(name.removeprefix(self.run_name_prefix))
        )


class CleanupReport(BaseModel):
    """What the function did for one ended execution."""

    model_config = ConfigDict(frozen=True)

    execution_arn: str
    status: str
    # None: the execution ended before NameRun, so it made no model copy.
    run: str | None
    deleted: bool
