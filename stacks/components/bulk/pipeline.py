"""The bulk-counting state machine ``<prefix>-bulk-counting``.

Input ``{"bucket": <data bucket>, "prefix": "archive/2026/"}`` (``counting bulk start``):

1. ``CheckRequest``: the bucket is the data bucket and the prefix is under one of
   ``bulk.source_prefixes`` (what the transform role may read); else a refusal report.
2. ``NameRun``, ``ReadActiveModel``: the run's name and the active-model record.
3. ``SelectImages`` (Distributed Map over the prefix's listing): each batch of listed
   objects drops what is not an image, skips what this model version counted already,
   rejects what the transform could not take, and writes its selection.
4. ``WriteManifest``: the selections joined into the transform's manifest.
5. ``TransformStep``: the active model on Batch Transform, one output per image.
6. ``CountResults`` (Distributed Map over the transform's outputs): the upload pipeline's
   post-processing, result documents, table items, events and metrics.
7. ``Summarize``: ``bulk/<run>/summary.json``; nothing counted ends as a failed run,
   otherwise ``NotifyFinished`` publishes the summary.

Each map batches ``bulk.batch_size`` items per child execution (Standard workflows:
redrivable and traced), runs at most ``bulk.max_concurrency`` of them at once, tolerates
``bulk.tolerated_failure_percentage`` failed ones, and writes Step Functions' record of
every child (failed batches' inputs included) under ``bulk/map-runs/``. Every stop sends
one report to the alerts topic, like a training run.
https://docs.aws.amazon.com/step-functions/latest/dg/state-map-distributed.html
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from counting_core import layout, stage_names
from counting_core.contracts import bulk_cleanup, bulk_counter
from counting_core.counts import bulk
from stacks.components.bulk.function import BulkCounterFunction
from stacks.components.bulk.transform import ACTIVE_MODEL, RUN, TRANSFORM, TransformStep
from stacks.components.permissions import acknowledge_state_machine_role
from stacks.components.storage import DataStorage
from stacks.components.workflow import retry_policies
from stacks.components.workflow.notify import FAILED, FAILURE_PATH, REFUSED, RunNotifications
from stacks.components.workflow.payloads import payload
from stacks.config import AppConfig, BulkSettings
from stacks.nag import acknowledge, arn_finding, object_prefix_finding

#: Where Step Functions writes each map run's record of its child executions.
MAP_RUNS = f"{layout.BULK}map-runs/"
#: Where the run keeps the summary the Lambda returns (``counting_core.counts.bulk.Summary``).
SUMMARY = "$.summary"
#: The request each Distributed Map sends the bulk Lambda per batch of listed objects.
BATCH_REQUESTS: dict[bulk.Step, type[bulk_counter.Select | bulk_counter.Count]] = {
    "select": bulk_counter.Select,
    "count": bulk_counter.Count,
}
# A run's name: "<prefix>-bulk-" and the first 8 hex digits of a UUID, within the 63
# characters of a transform job or model name for any allowed prefix (at most 30).
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTransformJob.html
# The prefix is bulk_cleanup.run_name_prefix, whose function deletes the model copy of an
# ended run by this name.
RUN_NAME = (
    "States.Format('{}{}', '%s', States.ArrayGetItem(States.StringSplit(States.UUID(), '-'), 0))"
)


class _ListedPrefixes(sfn.S3ObjectsItemReader):
    """CDK's S3 listing reader, allowed to list only the prefixes a run may list (CDK grants
    s3:ListBucket on the whole bucket). The prefix read comes from the run's input, so the
    condition names the prefixes known at synth time, as AWS's Distributed Map IAM guidance
    scopes ListBucket with an ``s3:prefix`` condition.
    https://docs.aws.amazon.com/step-functions/latest/dg/iam-policies-eg-dist-map.html
    """

    def __init__(self, bucket: s3.IBucket, prefix: str, allowed: Sequence[str]) -> None:
        super().__init__(bucket=bucket, prefix=prefix)
        self._bucket_arn = bucket.bucket_arn
        self._allowed = [f"{allowed_prefix}*" for allowed_prefix in allowed]

    def provide_policy_statements(self) -> list[iam.PolicyStatement]:
        return [
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self._bucket_arn],
                conditions={"StringLike": {"s3:prefix": self._allowed}},
            )
        ]


class _MapRunResults(sfn.ResultWriterV2):
    """CDK's result writer, granted only the prefix it writes to (CDK grants the whole bucket).

    Step Functions writes a map run's result files with these four actions.
    https://docs.aws.amazon.com/step-functions/latest/dg/input-output-resultwriter.html
    """

    def __init__(self, bucket: s3.IBucket) -> None:
        super().__init__(bucket=bucket, prefix=MAP_RUNS)
        self._objects = bucket.arn_for_objects(f"{MAP_RUNS}*")

    def provide_policy_statements(self) -> list[iam.PolicyStatement]:
        return [
            iam.PolicyStatement(
                actions=[
                    "s3:PutObject",
                    "s3:GetObject",
                    "s3:ListMultipartUploadParts",
                    "s3:AbortMultipartUpload",
                ],
                resources=[self._objects],
            )
        ]


class BulkCountingPipeline(Construct):
    """Attributes:
    state_machine: ``<prefix>-bulk-counting``.
    function: the bulk Lambda (``lambdas/bulk_counter``).
    transform: the transform step (its role included).
    select_map, count_map: the two Distributed Map states.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        storage: DataStorage,
        results_table: dynamodb.ITable,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        prefix, settings = config.prefix, config.bulk
        self._storage = storage
        bucket = storage.bucket_in(self)
        notifications = RunNotifications(
            self,
            "Notifications",
            prefix=prefix,
            topic=topic,
            stopped_subject="bulk counting run stopped",
        )
        self.function = BulkCounterFunction(
            self,
            "Function",
            config=config,
            storage=storage,
            results_table=results_table,
        )

        summarize = self._invoke(
            "Summarize",
            payload(
                bulk_counter.Summarize,
                action="summarize",
                run=sfn.JsonPath.string_at(RUN),
                prefix=sfn.JsonPath.string_at("$.prefix"),
                model_name=sfn.JsonPath.string_at(f"{ACTIVE_MODEL}.model_name"),
                transform=sfn.JsonPath.object_at(TRANSFORM),
            ),
            result_path=SUMMARY,
        )
        notifications.catch(summarize)
        self.count_map = self._map(
            "CountResults",
            listing=sfn.JsonPath.format(f"{layout.BULK}{{}}/outputs/", sfn.JsonPath.string_at(RUN)),
            allowed=[layout.BULK],
            action="count",
            settings=settings,
            bucket=bucket,
        )
        notifications.catch(self.count_map)
        self.transform = TransformStep(
            self,
            "Transform",
            prefix=prefix,
            settings=settings,
            storage=storage,
            image_uri=config.training.image_uri,
            tags=config.sagemaker_tags,
            notifications=notifications,
            then=self.count_map,
        )
        self.count_map.next(summarize)

        nothing_selected = sfn.Pass(
            self,
            "NothingToTransform",
            comment="Every image was skipped, ignored or rejected: no transform job",
            result=sfn.Result.from_object({"TransformJobStatus": "NotRun"}),
            result_path=TRANSFORM,
        )
        nothing_selected.next(summarize)
        anything = (
            sfn.Choice(self, "AnythingToCount")
            .when(
                sfn.Condition.number_greater_than("$.manifest.selected", 0),
                self.transform.start,
            )
            .otherwise(nothing_selected)
        )
        write_manifest = self._invoke(
            "WriteManifest",
            payload(bulk_counter.WriteManifest, action="manifest", run=sfn.JsonPath.string_at(RUN)),
            result_path="$.manifest",
        )
        notifications.catch(write_manifest)
        self.select_map = self._map(
            "SelectImages",
            listing=sfn.JsonPath.string_at("$.prefix"),
            # The choice before the map lets only prefixes under these through.
            allowed=settings.source_prefixes,
            action="select",
            settings=settings,
            bucket=bucket,
        )
        notifications.catch(self.select_map)

        read_model = tasks.CallAwsService(
            self,
            "ReadActiveModel",
            service="ssm",
            action="getParameter",
            parameters={"Name": config.active_model_parameter},
            iam_resources=[
                cdk.Stack.of(self).format_arn(
                    service="ssm",
                    resource="parameter",
                    resource_name=config.active_model_parameter.lstrip("/"),
                )
            ],
            iam_action="ssm:GetParameter",
            result_selector={
                "record": sfn.JsonPath.string_to_json(sfn.JsonPath.string_at("$.Parameter.Value"))
            },
            result_path="$.active",
        )
        # A missing record stays missing: report it at once instead of retrying.
        read_model.add_retry(errors=["Ssm.ParameterNotFoundException"], max_attempts=0)
        retry_policies.SSM_READ.apply(read_model)
        no_model = notifications.report(
            self,
            "NoModelDeployed",
            outcome=REFUSED,
            state=read_model.state_id,
            error="NoModelDeployed",
            cause=f"{config.active_model_parameter} does not exist: train and deploy a model "
            "before counting in bulk",
        )
        read_model.add_catch(
            no_model, errors=["Ssm.ParameterNotFoundException"], result_path=FAILURE_PATH
        )
        notifications.catch(read_model)

        name_run = sfn.Pass(
            self,
            bulk_cleanup.NAME_RUN_STATE,
            parameters={
                "bucket": sfn.JsonPath.string_at("$.bucket"),
                "prefix": sfn.JsonPath.string_at("$.prefix"),
                bulk_cleanup.RUN_FIELD: sfn.JsonPath.string_at(
                    RUN_NAME % bulk_cleanup.run_name_prefix(prefix)
                ),
            },
        )
        refused = notifications.report(
            self,
            "RequestRefused",
            outcome=REFUSED,
            state="CheckRequest",
            error="BadRequest",
            cause=f'Give {{"bucket": "{storage.bucket_name}", "prefix": "<key prefix>"}} '
            f"with a prefix under {', '.join(settings.source_prefixes)}",
        )
        check = (
            sfn.Choice(self, "CheckRequest")
            .when(self._valid_request(storage.bucket_name, settings.source_prefixes), name_run)
            .otherwise(refused)
        )
        finished = notifications.finished(
            self, "NotifyFinished", subject="bulk counting run finished", message_path=SUMMARY
        )
        nothing_counted = notifications.report(
            self,
            "NothingCounted",
            outcome=FAILED,
            state="Summarize",
            error="NothingCounted",
            cause=sfn.JsonPath.format(
                "{} selected images were not counted (transform job {}); see {}",
                sfn.JsonPath.string_at(f"{SUMMARY}.failed"),
                sfn.JsonPath.string_at(f"{SUMMARY}.transform_status"),
                sfn.JsonPath.string_at(f"{SUMMARY}.summary_uri"),
            ),
        )
        summarize.next(
            sfn.Choice(self, "AnythingCounted")
            .when(sfn.Condition.string_equals(f"{SUMMARY}.outcome", "failed"), nothing_counted)
            .otherwise(finished.next(sfn.Succeed(self, "RunFinished", output_path=SUMMARY)))
        )
        name_run.next(read_model).next(self.select_map).next(write_manifest).next(anything)

        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/vendedlogs/states/{stage_names.bulk_counting_state_machine(prefix)}",
            encryption_key=storage.key,
            retention=logs.RetentionDays.SIX_MONTHS,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=stage_names.bulk_counting_state_machine(prefix),
            comment="Every image under a prefix counted on Batch Transform, results announced",
            definition_body=sfn.DefinitionBody.from_chainable(check),
            timeout=cdk.Duration.hours(settings.timeout_hours),
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ERROR, include_execution_data=False
            ),
            tracing_enabled=True,
        )
        role = self.state_machine.role
        for statement in self.transform.statements:
            role.add_to_principal_policy(statement)
        storage.key.grant(role, "kms:Decrypt", "kms:GenerateDataKey")
        notifications.grant_publish(role)
        self._acknowledge(prefix)

    @staticmethod
    def _valid_request(bucket_name: str, source_prefixes: tuple[str, ...]) -> sfn.Condition:
        under_a_source = [
            sfn.Condition.string_matches("$.prefix", f"{source}*") for source in source_prefixes
        ]
        return sfn.Condition.and_(
            sfn.Condition.is_present("$.bucket"),
            sfn.Condition.is_string("$.bucket"),
            sfn.Condition.string_equals("$.bucket", bucket_name),
            sfn.Condition.is_present("$.prefix"),
            sfn.Condition.is_string("$.prefix"),
            sfn.Condition.or_(*under_a_source) if len(under_a_source) > 1 else under_a_source[0],
        )

    def _invoke(
        self, state_id: str, request: dict[str, Any], *, result_path: str
    ) -> tasks.LambdaInvoke:
        """The bulk Lambda with ``request``; its answer kept at ``result_path``."""
        task = tasks.LambdaInvoke(
            self,
            state_id,
            lambda_function=self.function.handler.function,
            payload=sfn.TaskInput.from_object(request),
            payload_response_only=True,
            result_path=result_path,
            retry_on_service_exceptions=False,
        )
        retry_policies.LAMBDA_SERVICE.apply(task)
        return task

    def _map(
        self,
        state_id: str,
        *,
        listing: str,
        allowed: Sequence[str],
        action: bulk.Step,
        settings: BulkSettings,
        bucket: s3.IBucket,
    ) -> sfn.DistributedMap:
        """A Distributed Map over ``listing`` (an S3 prefix under one of ``allowed``) whose
        batches go to the Lambda."""
        distributed = sfn.DistributedMap(
            self,
            state_id,
            item_reader=_ListedPrefixes(bucket, listing, allowed),
            item_batcher=sfn.ItemBatcher(
                max_items_per_batch=settings.batch_size,
                # Written out: CDK copies BatchInput as it is, without resolving JsonPath tokens.
                batch_input={"run.$": RUN, "model.$": ACTIVE_MODEL},
            ),
            max_concurrency=settings.max_concurrency,
            tolerated_failure_percentage=settings.tolerated_failure_percentage,
            map_execution_type=sfn.StateMachineType.STANDARD,
            result_writer_v2=_MapRunResults(bucket),
            result_path=f"$.maps.{action}",
        )
        batch = tasks.LambdaInvoke(
            self,
            f"{action.capitalize()}Batch",
            lambda_function=self.function.handler.function,
            payload=sfn.TaskInput.from_object(
                payload(
                    BATCH_REQUESTS[action],
                    action=action,
                    run=sfn.JsonPath.string_at("$.BatchInput.run"),
                    model=sfn.JsonPath.object_at("$.BatchInput.model"),
                    items=sfn.JsonPath.list_at("$.Items"),
                )
            ),
            payload_response_only=True,
            retry_on_service_exceptions=False,
        )
        retry_policies.LAMBDA_SERVICE.apply(batch)
        distributed.item_processor(batch)
        return distributed

    def _acknowledge(self, prefix: str) -> None:
        stack = cdk.Stack.of(self)
        policy = self.state_machine.role.node.find_child("DefaultPolicy")
        acknowledge_state_machine_role(
            self.state_machine,
            name="The bulk-counting state machine",
            prefix=prefix,
            sagemaker={
                "transform-job": "starts, watches and stops one transform job per run",
                "model": "reads the active model and creates one transform model per run",
            },
            function=self.function.handler.function,
            invokes="the bulk-counting function",
        )
        cfn_machine = self.state_machine.node.default_child
        assert isinstance(cfn_machine, sfn.CfnStateMachine)  # a StateMachine's L1 resource
        machine = stack.get_logical_id(cfn_machine)
        # As cdk-nag renders it: pseudo parameters as <AWS::Region>, a known environment
        # written out (stacks.nag.arn_finding does the same for plain ARNs).
        region = "<AWS::Region>" if cdk.Token.is_unresolved(stack.region) else stack.region
        account = "<AWS::AccountId>" if cdk.Token.is_unresolved(stack.account) else stack.account
        executions = (
            f"arn:<AWS::Partition>:states:{region}:{account}:execution:"
            f'{{"Fn::Select":[6,{{"Fn::Split":[":",{{"Ref":"{machine}"}}]}}]}}'
        )
        for children in (f"{executions}:*", f"{executions}/*:*"):
            acknowledge(
                self.state_machine.node.find_child("DistributedMapPolicy"),
                f"AwsSolutions-IAM5[Resource::{children}]",
                "A Distributed Map starts, watches, stops and redrives this state machine's own "
                "child executions, which Step Functions names at run time; CDK limits the "
                "statement to executions of this state machine.",
            )
        acknowledge(
            self.state_machine,
            "AwsSolutions-SF1",
            "A bulk run has a child execution per batch (a thousand for a million images), each "
            "with its own states: logging every event would bill gigabytes of logs per run. "
            "Errors are logged; each run's summary and the maps' result files under "
            f"{MAP_RUNS} record what every batch did.",
        )
        acknowledge(
            policy,
            arn_finding(stack, "sagemaker", f"model/{prefix}-bulk-*"),
            "The bulk-counting state machine deletes each run's transform model once its job "
            f"has ended. Runs are named at run time, so deleting is limited to names starting "
            f"with {prefix}-bulk-; the one name deleted is the one NameRun generates (never "
            "one from the execution's input), this stage's deployed models are named "
            f"{prefix}-<time>-<id>, and synth refuses a stage whose prefix extends this one.",
        )
        acknowledge(
            policy,
            object_prefix_finding(self._storage.bucket_name, MAP_RUNS),
            f"Step Functions writes each map run's result files under {MAP_RUNS}<map run id>/, "
            "named at run time.",
        )
