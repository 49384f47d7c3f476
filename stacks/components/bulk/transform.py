"""The transform step of a bulk run: the active model on SageMaker Batch Transform.

``DescribeActiveModel`` reads the image and model data of the model behind the endpoint,
``CreateTransformModel`` registers the same container and artifacts as a model of this run
(network-isolated) that runs as the transform role (which may read the images to count and
write the outputs, and nothing else), ``Transform`` (the ``BatchTransform`` construct the
evaluation uses too) runs ``createTransformJob.sync`` on the run's manifest: one request per
image (``application/x-image``, ``SplitType`` None), one ``<key>.out`` per image,
everything encrypted with the data key, stopped after ``transform_timeout``; and
``DeleteTransformModel`` deletes the run's model once the job has ended, completed, failed
or timed out. On the way to any other stop of the transform (its start failed, anything
else), ``DeleteModelOfStoppedRun`` deletes it. A run stopped by hand or past
``bulk.timeout_hours`` runs no Catch: ``counting stage teardown`` lists the copies such
runs leave (``<prefix>-bulk-<id>``).

Batch Transform has no managed spot instances (spot is a training-job feature), so a run
pays on-demand prices for ``bulk.instance_count`` instances while the job runs.
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTransformJob.html
https://docs.aws.amazon.com/step-functions/latest/dg/connect-sagemaker.html

When some images fail, SageMaker still writes the outputs of the others and marks the
job Failed (TransformOutput.S3OutputPath), so ``States.TaskFailed`` is caught as a
partial result and counting goes on with what is there. In a Catch, ``States.TaskFailed``
matches every error but a timeout, so the errors of starting the job (the SageMaker API's,
after their retries) are caught before it and stop the run: their job may still be
running, and neither its outputs nor its model may be taken as final.
https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformOutput.html
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from counting_core import layout
from counting_core.contracts import bulk_cleanup
from counting_core.counts import bulk
from stacks.components.permissions import (
    SageMakerExecutionRole,
    acknowledge_object_prefixes,
    allow,
    tagging_on_create,
)
from stacks.components.storage import DataStorage
from stacks.components.workflow import retry_policies
from stacks.components.workflow.batch_transform import (
    TRANSFORM_LOG_GROUP,
    BatchTransform,
    model_server_environment,
)
from stacks.components.workflow.notify import RunNotifications
from stacks.config import BulkSettings

#: Where the run keeps the transform job as it ended (DescribeTransformJob's fields, or
#: the error a failed job was caught with): ``counting_core.counts.bulk.TransformOutcome``.
TRANSFORM = "$.transform"
#: The active-model record (``counting_core.models.model_record.ActiveModel``), read at the start.
ACTIVE_MODEL = "$.active.record"
#: The run's name: its transform job, its model and its folder under ``bulk/``.
RUN = f"$.{bulk_cleanup.RUN_FIELD}"


def transform_timeout(settings: BulkSettings) -> cdk.Duration:
    """How long the transform job may run: three quarters of the run's ``timeout_hours``,
    leaving the last quarter to count what it wrote, delete the model and report, rather than
    the run timing out mid-job (which no Catch sees, leaving the job's model behind)."""
    return cdk.Duration.minutes(settings.timeout_hours * 60 * 3 // 4)


class TransformStep(Construct):
    """DescribeActiveModel -> CreateTransformModel -> Transform -> DeleteTransformModel, and
    the transform role.

    Attributes:
        role: what the transform job runs as.
        start: the first state; ``then`` follows the job, finished or failed.
        statements: what the state machine's role needs for these states.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        settings: BulkSettings,
        storage: DataStorage,
        image_uri: str | None,
        tags: list[dict[str, str]],
        notifications: RunNotifications,
        then: sfn.IChainable,
    ) -> None:
        super().__init__(scope, construct_id)
        self._storage = storage
        self._tags = tags
        self.role = self._transform_role(settings, image_uri)

        describe = tasks.CallAwsService(
            self,
            "DescribeActiveModel",
            service="sagemaker",
            action="describeModel",
            parameters={"ModelName": sfn.JsonPath.string_at(f"{ACTIVE_MODEL}.model_name")},
            iam_resources=[self._arn("model", prefix)],
            result_selector={
                "image": sfn.JsonPath.string_at("$.PrimaryContainer.Image"),
                "modelDataUrl": sfn.JsonPath.string_at("$.PrimaryContainer.ModelDataUrl"),
            },
            result_path="$.sourceModel",
        )
        create = tasks.CallAwsService(
            self,
            "CreateTransformModel",
            service="sagemaker",
            action="createModel",
            parameters={
                "ModelName": sfn.JsonPath.string_at(RUN),
                "ExecutionRoleArn": self.role.role_arn,
                "PrimaryContainer": {
                    "Image": sfn.JsonPath.string_at("$.sourceModel.image"),
                    "ModelDataUrl": sfn.JsonPath.string_at("$.sourceModel.modelDataUrl"),
                    # Not copied from the model (DescribeModel leaves Environment out when it
                    # has none, which a path cannot tell): the model server's limits, which
                    # take the run's largest image, and which other containers ignore.
                    "Environment": model_server_environment(settings.max_payload_mb),
                },
                "Tags": tags,
                # The copy needs no network: AWS's containers (built-in algorithm, PyTorch)
                # load the model, and the torchvision model's code, from its artifacts.
                # Batch Transform supports isolation, unlike the serverless endpoint the
                # deployed model serves (training/deploy.py), which therefore has none. A
                # custom image (training.image_uri) may need the network: left as it is.
                **({"EnableNetworkIsolation": True} if image_uri is None else {}),
            },
            iam_resources=[self._arn("model", prefix)],
            additional_iam_statements=[tagging_on_create(self._arn("model", prefix))],
            result_path=sfn.JsonPath.DISCARD,
        )
        self.job = BatchTransform(
            self,
            "Job",
            state_name="Transform",
            # Job names as before (<prefix>-bulk-<id>), within the statements' <prefix>-*.
            job_name_prefix=f"{prefix}-",
            job_name_path=RUN,
            model_name_path=RUN,
            manifest_uri_path="$.manifest.uri",
            output_uri_path=sfn.JsonPath.format(
                f"s3://{storage.bucket_name}/{layout.BULK}{{}}/outputs/",
                sfn.JsonPath.string_at(RUN),
            ),
            instance_type=settings.instance_type,
            instance_count=settings.instance_count,
            max_payload_mb=settings.max_payload_mb,
            # Left to the built-in algorithm, so only MaxPayloadInMB's own limit of 100 MB
            # applies.
            max_concurrent_transforms=None,
            volume_key=not settings.uses_instance_store,
            key=storage.key,
            timeout=transform_timeout(settings),
            result_path=TRANSFORM,
            # What the summary needs; a failed job is caught into the same place instead.
            result_selector={
                "TransformJobStatus.$": "$.TransformJobStatus",
                "TransformStartTime.$": "$.TransformStartTime",
                "TransformEndTime.$": "$.TransformEndTime",
                "TransformResources.$": "$.TransformResources",
            },
            tags=tags,
        )
        self.transform = self.job.state
        # The run's copy of the model has served once the job has ended, either way: deleted,
        # so models do not pile up run after run.
        delete = self._delete_model("DeleteTransformModel", prefix)
        for state in (describe, create):
            retry_policies.SAGEMAKER_API.apply(state)
            notifications.catch(state)
        # A model left behind costs nothing and must not cost the run its counts: the run goes
        # on, the error stays in the execution's history, and `counting stage teardown` lists
        # the model (named like the run).
        delete.add_catch(then, result_path=sfn.JsonPath.DISCARD)
        # The job could not be started (the errors its retry policies retry), or anything else
        # went wrong: the model is deleted on the way to the report. A job whose start was
        # answered with an error may still run: deleting its model does not stop a job that
        # has its container already, and a job not yet started fails for want of its model.
        before_report = self._delete_model("DeleteModelOfStoppedRun", prefix)
        notifications.catch(
            self.transform,
            errors=[
                *retry_policies.SAGEMAKER_JOB_API.errors,
                *retry_policies.TRANSFORM_CAPACITY.errors,
            ],
            via=before_report,
        )
        # Some images failed, or the job ran past its timeout (Step Functions then stops it):
        # the others' outputs are there; count them and report the rest.
        self.transform.add_catch(
            delete, errors=["States.TaskFailed", "States.Timeout"], result_path=TRANSFORM
        )
        notifications.catch(self.transform, via=before_report)
        self.start = describe
        describe.next(create).next(self.transform).next(delete).next(then)

        self.statements = [
            *self.job.statements,
            iam.PolicyStatement(
                sid="PassTheTransformRole",
                actions=["iam:PassRole"],
                resources=[self.role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
        ]

    def _arn(self, resource: str, prefix: str) -> str:
        return cdk.Stack.of(self).format_arn(
            service="sagemaker", resource=resource, resource_name=f"{prefix}-*"
        )

    def _delete_model(self, state_id: str, prefix: str) -> tasks.CallAwsService:
        """DeleteModel of the run's copy."""
        delete = tasks.CallAwsService(
            self,
            state_id,
            service="sagemaker",
            action="deleteModel",
            parameters={"ModelName": sfn.JsonPath.string_at(RUN)},
            # Run copies only ("<prefix>-bulk-<id>", pipeline.RUN_NAME), not this stage's
            # deployed models ("<prefix>-<time>-<id>"); synth refuses a stage "<stage>-bulk"
            # beside this one in cdk.json (config._check_no_stage_extends_another).
            iam_resources=[self._arn("model", f"{prefix}-bulk")],
            result_path=sfn.JsonPath.DISCARD,
        )
        retry_policies.SAGEMAKER_API.apply(delete)
        return delete

    def _transform_role(self, settings: BulkSettings, image_uri: str | None) -> iam.Role:
        storage = self._storage
        bucket = storage.bucket_in(self)
        execution = SageMakerExecutionRole(
            self,
            "TransformRole",
            description="Runs this app's SageMaker batch transform jobs (bulk counting)",
            log_group_name=TRANSFORM_LOG_GROUP,
            metrics_namespace=TRANSFORM_LOG_GROUP,
            runs="batch transform jobs",
            image_uri=image_uri,
        )
        policy = allow(
            execution.role,
            {
                "ReadImagesToCount": (
                    ["s3:GetObject"],
                    [bucket.arn_for_objects(f"{prefix}*") for prefix in settings.source_prefixes],
                ),
                "ReadModelArtifacts": (
                    ["s3:GetObject"],
                    [bucket.arn_for_objects(f"{layout.MODEL_ARTIFACTS}*")],
                ),
                # The run's manifest in, one output per image out.
                "ReadManifestsWriteOutputs": (
                    ["s3:GetObject", "s3:PutObject"],
                    [bucket.arn_for_objects(f"{layout.BULK}*")],
                ),
                # CreateGrant only for a volume key (none on instances with NVMe storage).
                "UseTheDataKey": (
                    ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
                    + ([] if settings.uses_instance_store else ["kms:CreateGrant"]),
                    [storage.key.key_arn],
                ),
            },
        )
        reasons = {
            prefix: f"A transform job reads the images a bulk run counts under {prefix}; "
            "their names are known only at run time."
            for prefix in settings.source_prefixes
        }
        reasons[layout.MODEL_ARTIFACTS] = (
            f"A transform job loads the active model's artifacts from {layout.MODEL_ARTIFACTS}, "
            "named per training run."
        )
        reasons[layout.BULK] = (
            f"A transform job reads its run's manifest and writes one output per image under "
            f"{bulk.run_prefix('<run>')}, named at run time."
        )
        acknowledge_object_prefixes(policy, storage.bucket_name, reasons)
        return execution.role
