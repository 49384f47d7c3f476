"""The transform step of a bulk run: the active model on SageMaker Batch Transform.

Four states: ``DescribeActiveModel`` reads the image and model data of the model behind
the endpoint, ``CreateTransformModel`` registers the same container and artifacts as a
model of this run that runs as the transform role (which may read the images to count and
write the outputs, and nothing else), ``Transform`` runs ``createTransformJob.sync`` on
the run's manifest: one request per image (``application/x-image``, ``SplitType`` None),
one ``<key>.out`` per image, everything encrypted with the data key; and
``DeleteTransformModel`` deletes the run's model once the job has ended.

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
from counting_core.constants import IMAGE_CONTENT_TYPE, JSON_CONTENT_TYPE
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
    model_server_environment,
    transform_job_statements,
)
from stacks.components.workflow.notify import RunNotifications
from stacks.config import BulkSettings

#: Where the run keeps the transform job as it ended (DescribeTransformJob's fields, or
#: the error a failed job was caught with): ``counting_core.counts.bulk.TransformOutcome``.
TRANSFORM = "$.transform"
#: The active-model record (``counting_core.models.model_record.ActiveModel``), read at the start.
ACTIVE_MODEL = "$.active.record"
#: The run's name: its transform job, its model and its folder under ``bulk/``.
RUN = "$.run"


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
            },
            iam_resources=[self._arn("model", prefix)],
            additional_iam_statements=[tagging_on_create(self._arn("model", prefix))],
            result_path=sfn.JsonPath.DISCARD,
        )
        self.transform = sfn.CustomState(
            self, "Transform", state_json=self._state_json(settings, storage)
        )
        # The run's copy of the model has served once the job has ended, either way: deleted,
        # so models do not pile up run after run.
        delete = tasks.CallAwsService(
            self,
            "DeleteTransformModel",
            service="sagemaker",
            action="deleteModel",
            parameters={"ModelName": sfn.JsonPath.string_at(RUN)},
            # Run copies only ("<prefix>-bulk-<id>", pipeline.RUN_NAME), not this stage's
            # deployed models ("<prefix>-<time>-<id>"); synth refuses a stage "<stage>-bulk"
            # beside this one in cdk.json (config._check_no_stage_extends_another).
            iam_resources=[self._arn("model", f"{prefix}-bulk")],
            result_path=sfn.JsonPath.DISCARD,
        )
        for state in (describe, create, delete):
            retry_policies.SAGEMAKER_API.apply(state)
        for state in (describe, create):
            notifications.catch(state)
        # A model left behind costs nothing and must not cost the run its counts: the run goes
        # on, the error stays in the execution's history, and the model (named like the run)
        # can be deleted by hand.
        delete.add_catch(then, result_path=sfn.JsonPath.DISCARD)
        retry_policies.SAGEMAKER_JOB_API.apply(self.transform)
        retry_policies.TRANSFORM_CAPACITY.apply(self.transform)
        # The job could not be started (the errors the two policies above retry): stop.
        notifications.catch(
            self.transform,
            errors=[
                *retry_policies.SAGEMAKER_JOB_API.errors,
                *retry_policies.TRANSFORM_CAPACITY.errors,
            ],
        )
        # Some images failed: the others' outputs are there; count them and report the rest.
        self.transform.add_catch(delete, errors=["States.TaskFailed"], result_path=TRANSFORM)
        notifications.catch(self.transform)
        self.start = describe
        describe.next(create).next(self.transform).next(delete).next(then)

        self.statements = [
            *transform_job_statements(self, f"{prefix}-*"),
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

    def _state_json(self, settings: BulkSettings, storage: DataStorage) -> dict:
        bucket_uri = f"s3://{storage.bucket_name}/"
        return {
            "Type": "Task",
            "Resource": f"arn:{cdk.Aws.PARTITION}:states:::sagemaker:createTransformJob.sync",
            "Parameters": {
                "TransformJobName.$": RUN,
                "ModelName.$": RUN,
                # One image per request, as the endpoint gets it; larger images were refused.
                # MaxConcurrentTransforms is left to the built-in algorithm, so only
                # MaxPayloadInMB's own limit of 100 MB applies.
                "BatchStrategy": "SingleRecord",
                "MaxPayloadInMB": settings.max_payload_mb,
                "TransformInput": {
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "ManifestFile",
                            "S3Uri.$": "$.manifest.uri",
                        }
                    },
                    "ContentType": IMAGE_CONTENT_TYPE,
                    "SplitType": "None",
                    "CompressionType": "None",
                },
                "TransformOutput": {
                    "S3OutputPath.$": sfn.JsonPath.format(
                        f"{bucket_uri}{layout.BULK}{{}}/outputs/", sfn.JsonPath.string_at(RUN)
                    ),
                    "Accept": JSON_CONTENT_TYPE,
                    "AssembleWith": "None",
                    "KmsKeyId": storage.key.key_arn,
                },
                "TransformResources": self._resources(settings, storage),
                "Tags": self._tags,
            },
            # What the summary needs; a failed job is caught into the same place instead.
            "ResultSelector": {
                "TransformJobStatus.$": "$.TransformJobStatus",
                "TransformStartTime.$": "$.TransformStartTime",
                "TransformEndTime.$": "$.TransformEndTime",
                "TransformResources.$": "$.TransformResources",
            },
            "ResultPath": TRANSFORM,
        }

    @staticmethod
    def _resources(settings: BulkSettings, storage: DataStorage) -> dict:
        resources = {
            "InstanceType": settings.instance_type,
            "InstanceCount": settings.instance_count,
        }
        # Instances with local NVMe storage encrypt it in hardware and refuse a volume key.
        # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformResources.html
        if not settings.uses_instance_store:
            resources["VolumeKmsKeyId"] = storage.key.key_arn
        return resources

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
