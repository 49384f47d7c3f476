"""The bulk cleanup against real run histories: the synthesized bulk-counting state machine
runs in moto's interpreter (``test_bulk_state_machine``), then the cleanup is handed the
event Step Functions would put on the bus for that execution, and reads its history and
moto's SageMaker as the function does."""

from __future__ import annotations

import pytest

from lambdas.bulk_cleanup import handler
from lambdas.bulk_cleanup.service import RunCleanup
from tests.lambdas.test_bulk_cleanup import ENVIRONMENT, ended
from tests.stepfunctions import test_bulk_state_machine as machine
from tests.stepfunctions.harness import Return, Throw
from tests.stepfunctions.test_bulk_state_machine import (
    IMAGES,
    MODEL_NAME,
    PREFIX,
    finished_job,
    models_left,
)

pytestmark = pytest.mark.synth

# The state machine's fixtures: the synthesized templates, and a run in moto.
templates = machine.templates
bulk = machine.bulk


def cleanup(bulk) -> RunCleanup:
    return RunCleanup(ENVIRONMENT, stepfunctions=bulk.stepfunctions, sagemaker=bulk.sagemaker)


def test_a_copy_the_run_could_not_delete_is_deleted_when_the_run_ends(bulk):
    bulk.deploy_model()
    bulk.upload(*IMAGES)
    refused = [Throw("SageMaker.SageMakerException", "Rate exceeded")] * 5
    run = bulk.run({"Transform": [Return(finished_job())], "DeleteTransformModel": refused})
    (copy,) = run.requests("DeleteTransformModel")[:1]
    assert run.status == "SUCCEEDED"
    assert sorted(models_left(bulk)) == sorted([MODEL_NAME, copy["ModelName"]])

    report = handler.clean(ended(run.arn, "SUCCEEDED"), cleanup(bulk))

    assert report == {
        "execution_arn": run.arn,
        "status": "SUCCEEDED",
        "run": copy["ModelName"],
        "deleted": True,
    }
    # The deployed model stays: only the run's copy, by the name its history holds, goes.
    assert models_left(bulk) == [MODEL_NAME]
    # The event again (EventBridge delivers at least once): nothing left to delete.
    again = handler.clean(ended(run.arn, "SUCCEEDED"), cleanup(bulk))
    assert (again["run"], again["deleted"]) == (copy["ModelName"], False)


def test_a_run_that_deleted_its_own_copy_leaves_nothing_to_do(bulk):
    bulk.deploy_model()
    bulk.upload(*IMAGES)
    run = bulk.run({"Transform": [Return(finished_job())]})

    report = handler.clean(ended(run.arn, "SUCCEEDED"), cleanup(bulk))

    assert report["deleted"] is False
    assert report["run"].startswith(f"{PREFIX}-bulk-")
    assert models_left(bulk) == [MODEL_NAME]


def test_a_run_refused_before_it_was_named_made_no_copy(bulk):
    run = bulk.run({}, request={"bucket": "another-bucket", "prefix": "archive/"})
    assert "NameRun" not in run.states()

    report = handler.clean(ended(run.arn, run.status), cleanup(bulk))

    assert (report["run"], report["deleted"]) == (None, False)
