"""Step 5, Evaluate: count the validation images with the new model and measure the count error.

After CreateModel and before any endpoint changes, a Batch Transform job runs the run's
model over the validation images (CPU, ``training.evaluation_instance_type``); then the
``evaluate_counts`` Lambda compares its counts with the labels
(``counting_core.evaluation``), writes ``evaluation.json`` and ``evaluation.png`` under
``training/models/<run>/`` and returns the figures at the calibrated threshold, which the
count gate and the active-model record read from ``$.evaluation``.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from counting_core import layout, training
from counting_core.evaluation import EvaluationSummary
from stacks.components.batch_transform import BatchTransform
from stacks.components.counter import PILLOW
from stacks.components.permissions import acknowledge_object_prefixes, allow
from stacks.components.python_function import PythonFunction, dependency_layer
from stacks.components.storage import DataStorage
from stacks.components.training import retry_policies
from stacks.components.training.notify import RunNotifications
from stacks.components.training.prepare import PREPARED
from stacks.nag import acknowledge

#: Where the state machine keeps the evaluation's figures (``EvaluationSummary``).
EVALUATION = "$.evaluation"
#: Where it keeps the finished transform job (its name and output).
TRANSFORM = "$.transform"
RUN_NAME = f"{PREPARED}.runName"
# Key prefixes, in any run's folder, of the Batch Transform answers and of the evaluation's
# two files (evaluation.json, evaluation.png): what the grants below name, nothing more.
PREDICTIONS = f"{layout.MODEL_ARTIFACTS}*/{training.PREDICTIONS_FOLDER}"
EVALUATION_FILES = f"{layout.MODEL_ARTIFACTS}*/{training.EVALUATION_FILE.removesuffix('json')}"
# Validation sets are hundreds of images; a CPU instance counts one in about a second after
# a few minutes of start-up. An hour is ample; past it the job is stopped and reported.
TRANSFORM_TIMEOUT = cdk.Duration.hours(1)
# The whole step at most: the job, waiting for transform quota first
# (retry_policies.TRANSFORM_CAPACITY, 25 minutes) and the evaluation Lambda (5 minutes).
EVALUATION_TIME = TRANSFORM_TIMEOUT.plus(cdk.Duration.minutes(30))


class EvaluationStep(Construct):
    """Batch Transform over the validation images, then the evaluation Lambda.

    Attributes:
        transform: the ``BatchTransform`` (its state and IAM statements).
        handler: the evaluation PythonFunction.
        start: the first state; the last one (``EvaluateCounts``) goes on to ``then``.
        statements: what the state machine's role needs for the transform job.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        instance_type: str,
        storage: DataStorage,
        model_role: iam.IRole,
        notifications: RunNotifications,
        then: sfn.IChainable,
    ) -> None:
        super().__init__(scope, construct_id)
        bucket = storage.bucket_in(self)
        self.transform = BatchTransform(
            self,
            "BatchTransform",
            state_name="PredictValidationImages",
            job_name_prefix=f"{prefix}-",
            job_name_path=RUN_NAME,
            model_name_path=RUN_NAME,
            manifest_uri_path=f"{PREPARED}.validationImagesUri",
            output_uri_path=sfn.JsonPath.format(
                f"s3://{storage.bucket_name}/{layout.MODEL_ARTIFACTS}{{}}/"
                f"{training.PREDICTIONS_FOLDER}",
                sfn.JsonPath.string_at(RUN_NAME),
            ),
            instance_type=instance_type,
            key=storage.key,
            timeout=TRANSFORM_TIMEOUT,
            result_path=TRANSFORM,
        )
        self.statements = self.transform.statements
        BatchTransform.grant_model_role(
            model_role,
            bucket=bucket,
            bucket_name=storage.bucket_name,
            key=storage.key,
            reads={
                layout.TRAINING_MANIFESTS: "A run's Batch Transform job reads the list of its "
                f"validation images under {layout.TRAINING_MANIFESTS}<run>/.",
                layout.LABELING_IMAGES: "A run's Batch Transform job reads its validation "
                f"images, which training read too, under {layout.LABELING_IMAGES}.",
            },
            writes={
                PREDICTIONS: "A run's Batch Transform job writes its answers under "
                f"{layout.MODEL_ARTIFACTS}<run>/{training.PREDICTIONS_FOLDER}.",
            },
        )
        notifications.catch(self.transform.state)

        self.handler = PythonFunction(
            self,
            "Function",
            name="evaluate_counts",
            description="Measures a trained model's count error on the validation images",
            key=storage.key,
            service="evaluate-counts",
            timeout=cdk.Duration.minutes(5),
            memory_size=1024,
            environment={"BUCKET": storage.bucket_name},
            layers=[dependency_layer(self, "Pillow", PILLOW)],
        )
        acknowledge_object_prefixes(
            allow(
                self.handler.role,
                {
                    "ReadValidationManifests": (
                        ["s3:GetObject"],
                        [bucket.arn_for_objects(f"{layout.TRAINING_MANIFESTS}*")],
                    ),
                    "ReadPredictions": (
                        ["s3:GetObject"],
                        [bucket.arn_for_objects(f"{PREDICTIONS}*")],
                    ),
                    "WriteEvaluations": (
                        ["s3:PutObject"],
                        [bucket.arn_for_objects(f"{EVALUATION_FILES}*")],
                    ),
                    "ListPredictions": (
                        ["s3:ListBucket"],
                        [bucket.bucket_arn],
                        {"StringLike": {"s3:prefix": f"{layout.MODEL_ARTIFACTS}*"}},
                    ),
                    "UseTheDataKey": (
                        ["kms:Decrypt", "kms:GenerateDataKey"],
                        [storage.key.key_arn],
                    ),
                },
            ),
            storage.bucket_name,
            {
                layout.TRAINING_MANIFESTS: "The count evaluation reads each run's validation "
                f"manifest under {layout.TRAINING_MANIFESTS}<run>/.",
                PREDICTIONS: "The count evaluation reads each run's Batch Transform answers "
                f"under {layout.MODEL_ARTIFACTS}<run>/{training.PREDICTIONS_FOLDER}.",
                EVALUATION_FILES: "The count evaluation writes "
                f"{training.EVALUATION_FILE} and {training.EVALUATION_PLOT_FILE} of each run "
                f"under {layout.MODEL_ARTIFACTS}<run>/.",
            },
        )
        acknowledge(
            self.handler.function,
            "Serverless-LambdaDLQ",
            "The count evaluation is only invoked synchronously by the training state "
            "machine, which retries it and reports its failures.",
        )
        evaluate = tasks.LambdaInvoke(
            self,
            "EvaluateCounts",
            lambda_function=self.handler.function,
            payload=sfn.TaskInput.from_object(
                {
                    "runName": sfn.JsonPath.string_at(RUN_NAME),
                    "validationManifestUri": sfn.JsonPath.string_at(
                        f"{PREPARED}.validationManifestUri"
                    ),
                    "labelAttribute": sfn.JsonPath.string_at(f"{PREPARED}.labelAttribute"),
                    "predictionsUri": sfn.JsonPath.string_at(
                        f"{TRANSFORM}.TransformOutput.S3OutputPath"
                    ),
                }
            ),
            # Keep exactly the summary the Lambda returns, field by field.
            result_selector={
                f"{field.alias}.$": f"$.Payload.{field.alias}"
                for field in EvaluationSummary.model_fields.values()
            },
            result_path=EVALUATION,
            retry_on_service_exceptions=False,
        )
        retry_policies.LAMBDA_SERVICE.apply(evaluate)
        notifications.catch(evaluate)
        self.start = self.transform.state
        self.transform.state.next(evaluate).next(then)
