"""Step 8, Record: publish what is now live, where the counter reads it, then tell people.

The record is ``counting_core.models.model_record.ActiveModel`` as JSON in one SSM parameter; the
counter Lambda caches it for a minute, so the new model is used within a minute.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from counting_core.models.model_record import ActiveModel
from stacks.components.training.evaluate import EVALUATION
from stacks.components.training.prepare import PREPARED
from stacks.components.training.quality_gate import VALIDATION_MAP
from stacks.components.training.train import TRAINING
from stacks.components.workflow import retry_policies
from stacks.components.workflow.notify import RunNotifications
from stacks.config import TrainingSettings

#: Where the state machine keeps the record it writes.
RECORD = "$.record"


class RecordStep(Construct):
    """Build the active-model record, save it to SSM, notify, succeed.

    Attributes:
        start: the first state.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoint_name: str,
        parameter_name: str,
        settings: TrainingSettings,
        notifications: RunNotifications,
    ) -> None:
        super().__init__(scope, construct_id)
        record = {
            "endpoint_name": endpoint_name,
            "endpoint_config_name": sfn.JsonPath.string_at(f"{PREPARED}.runName"),
            "model_name": sfn.JsonPath.string_at(f"{PREPARED}.runName"),
            "training_job_name": sfn.JsonPath.string_at(f"{TRAINING}.TrainingJobName"),
            "validation_map": sfn.JsonPath.number_at(VALIDATION_MAP),
            "class_map": sfn.JsonPath.object_at(f"{PREPARED}.classMap"),
            "label_attribute": sfn.JsonPath.string_at(f"{PREPARED}.labelAttribute"),
            # The counter applies best_threshold unless counter.score_threshold pins one.
            "best_threshold": sfn.JsonPath.number_at(f"{EVALUATION}.bestThreshold"),
            "count_mae": sfn.JsonPath.number_at(f"{EVALUATION}.mae"),
            # null when no validation image held an object.
            "count_wape": sfn.JsonPath.number_at(f"{EVALUATION}.wape"),
            "count_bias": sfn.JsonPath.number_at(f"{EVALUATION}.bias"),
            "evaluation_uri": sfn.JsonPath.string_at(f"{EVALUATION}.reportUri"),
            "deployed_at": sfn.JsonPath.state_entered_time,
            # The counter scales images to a multiple of it before sending them.
            "image_shape": settings.image_shape,
            "algorithm": settings.algorithm,
            "detector": settings.detector if settings.algorithm == "torchvision" else None,
            # The active model it replaced, measured on the same images (null for the first).
            "champion": sfn.JsonPath.object_at(f"{EVALUATION}.champion"),
            # Whether it counts better in tiles, and the threshold of tiled counts, as the
            # evaluation measured them (null with counter.tiling off): what `auto` follows.
            "tiling": sfn.JsonPath.object_at(f"{EVALUATION}.tiling"),
            # Why it was deployed without the champion comparison, if it was.
            "forced_deploy": settings.force_deploy,
        }
        unknown = set(record) - set(ActiveModel.model_fields)
        if unknown:
            raise ValueError(f"not fields of the active-model record: {sorted(unknown)}")
        self.start = sfn.Pass(self, "DescribeActiveModel", parameters=record, result_path=RECORD)

        stack = cdk.Stack.of(self)
        save = tasks.CallAwsService(
            self,
            "SaveActiveModel",
            service="ssm",
            action="putParameter",
            parameters={
                "Name": parameter_name,
                "Description": (
                    f"The model behind {endpoint_name} (counting_core.models.model_record)"
                ),
                "Value": sfn.JsonPath.json_to_string(sfn.JsonPath.object_at(RECORD)),
                "Type": "String",
                "Overwrite": True,
                # Standard up to 4 KB; a very long class map moves it to the advanced tier.
                "Tier": "Intelligent-Tiering",
            },
            iam_resources=[
                stack.format_arn(
                    service="ssm", resource="parameter", resource_name=parameter_name.lstrip("/")
                )
            ],
            iam_action="ssm:PutParameter",
            result_path=sfn.JsonPath.DISCARD,
        )
        retry_policies.SSM_WRITE.apply(save)
        notifications.catch(save)
        self.start.next(save).next(
            notifications.deployed(self, "NotifyDeployed", record_path=RECORD)
        ).next(sfn.Succeed(self, "Deployed", output_path=RECORD))
