"""Step 6, the count gate: deploy only a model whose count error is small enough.

The evaluation (``evaluate.py``) measures ``wape``, Σ|predicted - true| / Σ true over the
validation images, at the calibrated threshold. With ``training.max_count_wape`` set, a
model above it stops the run, reported as ``refused`` (``CountGateNotMet``) with the
figures in the cause; the endpoint keeps the model it had. A WAPE that could not be
measured (no labeled object among the validation images) is refused too: nothing shows
the counts are right. Unset (``null``), the gate is off and the run goes on to deploy.
"""

from __future__ import annotations

from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.components.training.evaluate import EVALUATION
from stacks.components.workflow.notify import REFUSED, RunNotifications

WAPE = f"{EVALUATION}.wape"


class CountGate(Construct):
    """A Choice on ``$.evaluation.wape``, or nothing when the gate is off.

    Attributes:
        start: the gate, or ``then`` itself when ``max_count_wape`` is None.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        max_count_wape: float | None,
        notifications: RunNotifications,
        then: sfn.IChainable,
    ) -> None:
        super().__init__(scope, construct_id)
        if max_count_wape is None:
            self.start: sfn.IChainable = then
            return
        figures = {
            name: sfn.JsonPath.string_at(f"{EVALUATION}.{name}")
            for name in ("wape", "bestThreshold", "mae", "bias", "images", "reportUri")
        }
        refused = notifications.report(
            self,
            "CountGateNotMet",
            outcome=REFUSED,
            state="CountGate",
            error="CountGateNotMet",
            cause=sfn.JsonPath.format(
                f"count error (WAPE) {{}} at the calibrated threshold {{}} is above the maximum "
                f"{max_count_wape}: MAE {{}} objects per image, bias {{}}, over {{}} validation "
                "images (report: {}); nothing was deployed, the endpoint keeps its current model.",
                *figures.values(),
            ),
        )
        self.start = (
            sfn.Choice(self, "CountGate", comment=f"count WAPE <= {max_count_wape}?")
            .when(
                sfn.Condition.and_(
                    sfn.Condition.is_numeric(WAPE),
                    sfn.Condition.number_less_than_equals(WAPE, max_count_wape),
                ),
                then,
            )
            .otherwise(refused)
        )
