"""Step 7, the champion comparison: deploy only a model that counts no worse than the active one.

The evaluation (``evaluate.py``) runs the active model (the champion, named in the
active-model record) over the same validation images as the new model (the challenger)
and measures both, each at its own calibrated threshold, on the images the champion did not
train on (``challengerMae`` against ``mae``). A challenger whose count MAE there is above
the champion's stops the run, reported as ``refused`` (``ChampionNotBeaten``) with
both figures in the cause; the endpoint keeps the champion. The first model has no
champion and goes on. ``training.force_deploy`` (a reason) removes the comparison: the
figures are still measured and recorded, with the reason, in the active-model record.
"""

from __future__ import annotations

from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.components.training.evaluate import EVALUATION
from stacks.components.workflow.notify import REFUSED, RunNotifications

CHAMPION = f"{EVALUATION}.champion"


class ChampionGate(Construct):
    """A Choice comparing ``$.evaluation.champion.challengerMae`` with
    ``$.evaluation.champion.mae``: both models on the same images.

    Attributes:
        start: the gate, or ``then`` itself when ``force_deploy`` is given.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        force_deploy: str | None,
        notifications: RunNotifications,
        then: sfn.IChainable,
    ) -> None:
        super().__init__(scope, construct_id)
        if force_deploy is not None:
            self.start: sfn.IChainable = then
            return
        figures = [
            sfn.JsonPath.string_at(path)
            for path in (
                f"{CHAMPION}.challengerMae",
                f"{CHAMPION}.images",
                f"{CHAMPION}.trainedOn",
                f"{CHAMPION}.modelName",
                f"{CHAMPION}.mae",
                f"{CHAMPION}.challengerWape",
                f"{CHAMPION}.wape",
                f"{EVALUATION}.reportUri",
            )
        ]
        not_beaten = notifications.report(
            self,
            "ChampionNotBeaten",
            outcome=REFUSED,
            state="ChampionGate",
            error="ChampionNotBeaten",
            cause=sfn.JsonPath.format(
                # No apostrophe: States.Format's template is a single-quoted string.
                "count MAE {} objects per image on the {} validation images the active model did "
                "not train on (left out: {}) is worse than the active model {} with {} on the "
                "same images (WAPE {} against {}; report: {}); "
                "nothing was deployed, the endpoint keeps the active model. To deploy it "
                "anyway, set training.force_deploy to the reason.",
                *figures,
            ),
        )
        self.start = (
            sfn.Choice(self, "ChampionGate", comment="count MAE <= the active model's?")
            # The first model: nothing to compare with.
            .when(sfn.Condition.is_null(CHAMPION), then)
            .when(
                sfn.Condition.number_less_than_equals_json_path(
                    f"{CHAMPION}.challengerMae", f"{CHAMPION}.mae"
                ),
                then,
            )
            .otherwise(not_beaten)
        )
