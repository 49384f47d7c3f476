"""Step 1, Prepare: check and split the labeled manifest before any GPU is paid for."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from counting_core import layout
from counting_core.contracts import prepare_training_data
from counting_core.models import training
from stacks.components.permissions import acknowledge_object_prefixes, allow
from stacks.components.python_function import HandlerFunction
from stacks.components.storage import DataStorage
from stacks.components.workflow import retry_policies
from stacks.components.workflow.notify import FAILURE_PATH, REFUSED, RunNotifications
from stacks.components.workflow.payloads import payload, result_selector
from stacks.config import TrainingSettings
from stacks.nag import acknowledge

#: Where the state machine keeps Prepare's result (``PreparedRun``).
PREPARED = "$.prepared"

# Sized from `make bench` ("prepare code path" figures): splitting a 1,000,000-line manifest
# peaks at about 120 MB and memory stays flat with size (the manifest is streamed through
# /tmp). 1,024 MB leaves room for boto3 and Powertools and buys CPU: Lambda gives CPU in
# proportion to memory (one vCPU at 1,769 MB), and the benchmark's ~20 s of CPU at a million
# lines becomes about a minute here, inside TIMEOUT with room for the S3 transfers.
# https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html
MEMORY_MB = 1024
TIMEOUT = cdk.Duration.minutes(5)
# /tmp holds the manifest and both channels, about twice the manifest's size: 4 GiB takes a
# manifest of 2 GB, some 2.5 million lines as Ground Truth writes them (~750 bytes each).
# https://docs.aws.amazon.com/lambda/latest/dg/configuration-ephemeral-storage.html
EPHEMERAL_STORAGE = cdk.Size.gibibytes(4)


class PrepareStep(Construct):
    """The ``prepare_training_data`` Lambda and the task state that invokes it.

    The task sends the execution's input and identity; the Lambda answers with a
    ``PreparedRun`` (run name, manifests, class map, data hyperparameters), kept at
    ``$.prepared``. ``DataNotTrainable`` from the Lambda is not retried: it is reported.

    Attributes:
        handler: the HandlerFunction.
        state: the task state.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        settings: TrainingSettings,
        storage: DataStorage,
        notifications: RunNotifications,
    ) -> None:
        super().__init__(scope, construct_id)
        self.handler = HandlerFunction(
            self,
            "Function",
            name="prepare_training_data",
            description="Checks and splits a labeled manifest for a training run",
            key=storage.key,
            service="prepare-training-data",
            contract=prepare_training_data.Environment,
            environment={
                "bucket": storage.bucket_name,
                "name_prefix": prefix,
                "validation_fraction": settings.validation_fraction,
                "split_seed": settings.split_seed,
                "keep_images_without_boxes": settings.algorithm == "torchvision",
            },
            timeout=TIMEOUT,
            memory_size=MEMORY_MB,
            ephemeral_storage=EPHEMERAL_STORAGE,
        )
        self._grant(storage)
        acknowledge(
            self.handler.function,
            "Serverless-LambdaDLQ",
            "The training data preparation is only invoked synchronously by the training "
            "state machine, which retries it and reports its failures.",
        )
        self.state = tasks.LambdaInvoke(
            self,
            "PrepareTrainingData",
            lambda_function=self.handler.function,
            payload=sfn.TaskInput.from_object(
                payload(
                    prepare_training_data.PrepareRequest,
                    request=sfn.JsonPath.object_at("$"),
                    execution_id=sfn.JsonPath.execution_id,
                    started_at=sfn.JsonPath.execution_start_time,
                )
            ),
            # Keep exactly the PreparedRun the Lambda returns, field by field.
            result_selector=result_selector(prepare_training_data.PreparedRun),
            result_path=PREPARED,
            retry_on_service_exceptions=False,
        )
        retry_policies.LAMBDA_SERVICE.apply(self.state)
        bad_data = notifications.report(
            self,
            "BadData",
            outcome=REFUSED,
            state=self.state.state_id,
            error=training.DataNotTrainable.__name__,
            # The Lambda's error as JSON: errorType, errorMessage (the reason).
            cause=sfn.JsonPath.string_at(f"{FAILURE_PATH}.Cause"),
        )
        self.state.add_catch(
            bad_data, errors=[training.DataNotTrainable.__name__], result_path=FAILURE_PATH
        )
        notifications.catch(self.state)

    def _grant(self, storage: DataStorage) -> None:
        """Read manifests where runs may start from; write each run's prepared data."""
        bucket = storage.bucket_in(self)
        role = self.handler.role
        statements = {
            "ReadManifestsToTrainOn": (
                ["s3:GetObject"],
                [bucket.arn_for_objects(f"{prefix}*") for prefix in training.MANIFEST_SOURCES],
            ),
            "WritePreparedData": (
                ["s3:PutObject"],
                [bucket.arn_for_objects(f"{layout.TRAINING_MANIFESTS}*")],
            ),
            "UseTheDataKey": (["kms:Decrypt", "kms:GenerateDataKey"], [storage.key.key_arn]),
        }
        acknowledge_object_prefixes(
            allow(role, statements),
            storage.bucket_name,
            {
                prefix: f"The training data preparation {why} {prefix}, in files named by "
                "users, labeling jobs and runs at run time."
                for prefix, why in (
                    (
                        layout.TRAINING_REQUESTS,
                        "reads the manifests uploaded to start training under",
                    ),
                    (layout.LABELING_OUTPUT, "reads the output manifests of labeling jobs under"),
                    (
                        layout.TRAINING_MANIFESTS,
                        "writes each run's manifests and data report under",
                    ),
                )
            },
        )
