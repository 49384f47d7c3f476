"""Step 5, Evaluate: count the validation images with the new model and with the active one,
and measure both count errors.

After CreateModel and before any endpoint changes, a Batch Transform job runs the run's
model over the validation images (CPU, ``training.evaluation_instance_type``). The active
model (the champion: the active-model record's ``model_name``, when there is a record) runs
over the same images in a second job. The ``evaluate_counts`` Lambda then compares the counts
with the labels (``counting_core.models.evaluation``), writes ``evaluation.json`` (both models'
figures side by side) and ``evaluation.png`` under ``training/models/<run>/`` and returns the
figures at the calibrated threshold, with the champion's (or null), which the count gate,
the champion gate and the active-model record read from ``$.evaluation``.

With ``counter.tiling`` on or auto (the setting decides at synth), the run's model also
counts the validation images in tiles, as the counter would tile them: the ``cut_tiles``
Lambda cuts every image with the counter's policy, whatever its mode (the point is to
compare), writing the tile JPEGs, their TileSets and a manifest under
``training/models/<run>/tiles/``; it stops before its timeout and the state machine invokes it
again from where it stopped until every image is cut. A third Batch Transform job (same
instance type, its own timeout) answers the tiles into ``tile-predictions/``, and the
evaluation merges each image's tile answers as the counter does (its whole-image pass is the
image's answer sent whole) and returns which counts better (``$.evaluation.tiling``), which
the active-model record keeps for ``auto``. The active model is never counted in tiles: the
choice is the new model's. With tiling off there are no tile states.

The record is read with GetParameters, which lists a missing name under InvalidParameters
instead of failing: "no active model" needs no error name, and any other failure of the
read stops the run instead of skipping the comparison.
https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetParameters.html
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from counting_core import layout
from counting_core.contracts import cut_tiles, evaluate_counts
from counting_core.models import training
from stacks.components.permissions import acknowledge_object_prefixes, allow
from stacks.components.python_function import HandlerFunction, imaging_layer
from stacks.components.storage import DataStorage
from stacks.components.training.prepare import PREPARED
from stacks.components.workflow import retry_policies
from stacks.components.workflow.batch_transform import BatchTransform
from stacks.components.workflow.notify import RunNotifications
from stacks.components.workflow.payloads import payload, result_selector
from stacks.config import TilingSettings
from stacks.nag import acknowledge

#: Where the state machine keeps the evaluation's figures (``EvaluateResponse``).
EVALUATION = "$.evaluation"
#: Where it keeps the finished transform job (its name and output).
TRANSFORM = "$.transform"
#: Where it keeps the active model to compare with: its record, then ``{"modelName",
#: "predictionsUri"}`` for the evaluation (``{}`` when there is none).
CHAMPION = "$.champion"
CHAMPION_LOOKUP = "$.championLookup"
CHAMPION_TRANSFORM = "$.championTransform"
#: Why the active model could not be run on this run's images, when it could not (its model
#: deleted since, its transform failed): the run goes on without a comparison.
CHAMPION_FAILURE = "$.championFailure"
RUN_NAME = f"{PREPARED}.runName"
# Key prefixes, in any run's folder, of the Batch Transform answers and of the evaluation's
# two files (evaluation.json, evaluation.png): what the grants below name, nothing more.
PREDICTIONS = f"{layout.MODEL_ARTIFACTS}*/{training.PREDICTIONS_FOLDER}"
CHAMPION_PREDICTIONS = f"{layout.MODEL_ARTIFACTS}*/{training.CHAMPION_PREDICTIONS_FOLDER}"
EVALUATION_FILES = f"{layout.MODEL_ARTIFACTS}*/{training.EVALUATION_FILE.removesuffix('json')}"
TILES = f"{layout.MODEL_ARTIFACTS}*/{training.TILES_FOLDER}"
TILE_SETS = f"{layout.MODEL_ARTIFACTS}*/{training.TILE_SETS}"
TILE_PREDICTIONS = f"{layout.MODEL_ARTIFACTS}*/{training.TILE_PREDICTIONS_FOLDER}"
#: Where the state machine keeps how far the cutting of tiles got (``CutResponse``), and the
#: finished tile transform job.
TILE_CUT = "$.tileCut"
TILE_TRANSFORM = "$.tileTransform"
# Validation sets are hundreds of images; a CPU instance counts one in about a second after
# a few minutes of start-up. An hour is ample; past it the job is stopped and reported.
TRANSFORM_TIMEOUT = cdk.Duration.hours(1)
# A tile is a request of its own: 80 for a 12 MP photo at 512 px tiles, each costing the
# instance about what a whole image does (about 0.5 s on ml.m5.xlarge: docs/costs.md, B1).
# 500 validation photos of 12 MP take some 5.6 hours; past 6 the job is stopped and reported.
TILE_TRANSFORM_TIMEOUT = cdk.Duration.hours(6)
# Each invocation of the cutting function runs at most 15 minutes (about 700 photos of
# 12 MP); an hour of invocations covers a few thousand validation photos.
CUT_FUNCTION_TIMEOUT = cdk.Duration.minutes(15)
_CUT_TIME = cdk.Duration.hours(1)
# The evaluation reads one answer per tile too: 16,000 for 200 photos of 12 MP.
EVALUATE_TIMEOUT = cdk.Duration.minutes(5)
TILED_EVALUATE_TIMEOUT = cdk.Duration.minutes(15)
# Each job may first wait for transform quota (retry_policies.TRANSFORM_CAPACITY, 25 minutes).
_QUOTA_WAIT = cdk.Duration.minutes(25)
_JOB_TIME = TRANSFORM_TIMEOUT.plus(_QUOTA_WAIT)


def evaluation_time(tiled: bool) -> cdk.Duration:
    """The whole step at most: two jobs (the new model's, the active model's) and the
    evaluation Lambda; with tiling measured (``tiled``), the cutting and the tiles' job too,
    and the evaluation's longer limit."""
    jobs = _JOB_TIME.plus(_JOB_TIME)
    if not tiled:
        return jobs.plus(EVALUATE_TIMEOUT)
    tiles = TILE_TRANSFORM_TIMEOUT.plus(_QUOTA_WAIT).plus(_CUT_TIME)
    return jobs.plus(tiles).plus(TILED_EVALUATE_TIMEOUT)


# The cutting function holds up to two decoded photos (cut_tiles.service.WORKERS; a 100 MP
# photo is 300 MB decoded) and Pillow's working copies.
CUT_MEMORY_MB = 3072


class EvaluationStep(Construct):
    """Batch Transform over the validation images, then the evaluation Lambda.

    Attributes:
        transform: the ``BatchTransform`` (its state and IAM statements).
        handler: the evaluation HandlerFunction.
        start: the first state; the last one (``EvaluateCounts``) goes on to ``then``.
        statements: what the state machine's role needs for the transform job.
        time_limit: the longest the step can take (``evaluation_time``), for the state
            machine's own time limit.
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
        active_model_parameter: str,
        max_count_wape: float | None,
        tags: list[dict[str, str]],
        notifications: RunNotifications,
        tiling: TilingSettings,
        image_shape: int,
        then: sfn.IChainable,
    ) -> None:
        super().__init__(scope, construct_id)
        tiled = tiling.mode != "off"
        self.time_limit = evaluation_time(tiled)
        bucket = storage.bucket_in(self)

        def predictions(folder: str) -> str:
            return sfn.JsonPath.format(
                f"s3://{storage.bucket_name}/{layout.MODEL_ARTIFACTS}{{}}/{folder}",
                sfn.JsonPath.string_at(RUN_NAME),
            )

        # names: the JsonPaths that tell the two jobs apart (BatchTransform takes other
        # keywords too, which these never set).
        def transform(construct_id: str, state_name: str, **names: Any) -> BatchTransform:
            names.setdefault("manifest_uri_path", f"{PREPARED}.validationImagesUri")
            names.setdefault("timeout", TRANSFORM_TIMEOUT)
            return BatchTransform(
                self,
                construct_id,
                state_name=state_name,
                job_name_prefix=f"{prefix}-",
                instance_type=instance_type,
                key=storage.key,
                tags=tags,
                **names,
            )

        self.transform = transform(
            "BatchTransform",
            "PredictValidationImages",
            job_name_path=RUN_NAME,
            model_name_path=RUN_NAME,
            output_uri_path=predictions(training.PREDICTIONS_FOLDER),
            result_path=TRANSFORM,
        )
        # The active model over the same images, as "<run>-champion" (run names leave room:
        # training.MAX_PREFIX_LENGTH); both jobs are this project's, named <prefix>-*, so the
        # first job's statements cover it.
        self.champion_transform = transform(
            "ChampionTransform",
            "PredictWithChampion",
            job_name_path=sfn.JsonPath.format(
                f"{{}}{training.CHAMPION_JOB_SUFFIX}", sfn.JsonPath.string_at(RUN_NAME)
            ),
            model_name_path=f"{CHAMPION}.record.model_name",
            output_uri_path=predictions(training.CHAMPION_PREDICTIONS_FOLDER),
            result_path=CHAMPION_TRANSFORM,
        )
        # The run's model over the tiles, as "<run>-tiles"; the champion is not tiled.
        self.tile_transform = (
            transform(
                "TileTransform",
                "PredictValidationTiles",
                job_name_path=sfn.JsonPath.format(
                    f"{{}}{training.TILES_JOB_SUFFIX}", sfn.JsonPath.string_at(RUN_NAME)
                ),
                model_name_path=RUN_NAME,
                manifest_uri_path=f"{TILE_CUT}.manifestUri",
                output_uri_path=predictions(training.TILE_PREDICTIONS_FOLDER),
                result_path=TILE_TRANSFORM,
                timeout=TILE_TRANSFORM_TIMEOUT,
            )
            if tiled
            else None
        )
        self.statements = self.transform.statements
        tile_reads = (
            {
                TILES: "A run's Batch Transform job of tiles reads their manifest and the tiles "
                f"under {layout.MODEL_ARTIFACTS}<run>/{training.TILES_FOLDER}."
            }
            if tiled
            else {}
        )
        tile_writes = (
            {
                TILE_PREDICTIONS: "A run's Batch Transform job of tiles writes its answers "
                f"under {layout.MODEL_ARTIFACTS}<run>/{training.TILE_PREDICTIONS_FOLDER}."
            }
            if tiled
            else {}
        )
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
                **tile_reads,
            },
            writes={
                PREDICTIONS: "A run's Batch Transform job writes its answers under "
                f"{layout.MODEL_ARTIFACTS}<run>/{training.PREDICTIONS_FOLDER}.",
                CHAMPION_PREDICTIONS: "A run's Batch Transform job of the active model writes "
                f"its answers under {layout.MODEL_ARTIFACTS}<run>/"
                f"{training.CHAMPION_PREDICTIONS_FOLDER}.",
                **tile_writes,
            },
        )
        notifications.catch(self.transform.state)
        find_champion = self._find_champion(active_model_parameter, notifications)

        imaging = imaging_layer(self)
        self.handler = HandlerFunction(
            self,
            "Function",
            name="evaluate_counts",
            description="Measures a trained model's count error on the validation images",
            key=storage.key,
            service="evaluate-counts",
            contract=evaluate_counts.Environment,
            environment={"bucket": storage.bucket_name, "max_count_wape": max_count_wape},
            timeout=TILED_EVALUATE_TIMEOUT if tiled else EVALUATE_TIMEOUT,
            memory_size=1024,
            layers=[imaging],
        )
        tile_answers = [TILE_SETS, TILE_PREDICTIONS] if tiled else []
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
                        [
                            bucket.arn_for_objects(f"{PREDICTIONS}*"),
                            bucket.arn_for_objects(f"{CHAMPION_PREDICTIONS}*"),
                            *(bucket.arn_for_objects(f"{prefix}*") for prefix in tile_answers),
                        ],
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
                CHAMPION_PREDICTIONS: "The count evaluation reads the active model's Batch "
                f"Transform answers for each run under {layout.MODEL_ARTIFACTS}<run>/"
                f"{training.CHAMPION_PREDICTIONS_FOLDER}.",
                **(
                    {
                        TILE_SETS: "The count evaluation reads how each run's validation images "
                        f"were cut into tiles under {layout.MODEL_ARTIFACTS}<run>/"
                        f"{training.TILE_SETS}.",
                        TILE_PREDICTIONS: "The count evaluation reads each run's Batch "
                        f"Transform answers for the tiles under {layout.MODEL_ARTIFACTS}<run>/"
                        f"{training.TILE_PREDICTIONS_FOLDER}.",
                    }
                    if tiled
                    else {}
                ),
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
                payload(
                    evaluate_counts.EvaluateRequest,
                    run_name=sfn.JsonPath.string_at(RUN_NAME),
                    validation_manifest_uri=sfn.JsonPath.string_at(
                        f"{PREPARED}.validationManifestUri"
                    ),
                    label_attribute=sfn.JsonPath.string_at(f"{PREPARED}.labelAttribute"),
                    class_map=sfn.JsonPath.object_at(f"{PREPARED}.classMap"),
                    predictions_uri=sfn.JsonPath.string_at(
                        f"{TRANSFORM}.TransformOutput.S3OutputPath"
                    ),
                    champion=sfn.JsonPath.object_at(CHAMPION),
                    **(
                        {
                            "tiles": payload(
                                evaluate_counts.TilesRequest,
                                tile_sets_uri=sfn.JsonPath.string_at(f"{TILE_CUT}.tileSetsUri"),
                                predictions_uri=sfn.JsonPath.string_at(
                                    f"{TILE_TRANSFORM}.TransformOutput.S3OutputPath"
                                ),
                            )
                        }
                        if tiled
                        else {}
                    ),
                )
            ),
            # Keep exactly the figures the Lambda returns, field by field, with the champion's
            # (null for a first model).
            result_selector=result_selector(evaluate_counts.EvaluateResponse),
            result_path=EVALUATION,
            retry_on_service_exceptions=False,
        )
        retry_policies.LAMBDA_SERVICE.apply(evaluate)
        notifications.catch(evaluate)
        self.start = self.transform.state
        self.cutter: HandlerFunction | None = None
        if self.tile_transform is None:
            self.transform.state.next(find_champion)
        else:
            self.cutter = self._cutter(storage, bucket, tiling, image_shape, imaging)
            self.transform.state.next(
                self._cut_tiles(self.cutter, notifications, then=self.tile_transform.state)
            )
            notifications.catch(self.tile_transform.state)
            self.tile_transform.state.next(find_champion)
        no_champion = sfn.Pass(
            self, "NoChampion", result=sfn.Result.from_object({}), result_path=CHAMPION
        )
        read_champion = sfn.Pass(
            self,
            "ReadChampion",
            parameters={
                "record": sfn.JsonPath.string_to_json(
                    sfn.JsonPath.string_at(f"{CHAMPION_LOOKUP}.values[0]")
                )
            },
            result_path=CHAMPION,
        )
        compare = sfn.Pass(
            self,
            "CompareWithChampion",
            parameters=payload(
                evaluate_counts.ChampionRequest,
                model_name=sfn.JsonPath.string_at(f"{CHAMPION}.record.model_name"),
                class_map=sfn.JsonPath.object_at(f"{CHAMPION}.record.class_map"),
                predictions_uri=sfn.JsonPath.string_at(
                    f"{CHAMPION_TRANSFORM}.TransformOutput.S3OutputPath"
                ),
            ),
            result_path=CHAMPION,
        )
        # A champion that cannot run (its model deleted since, its job failed) must not stop
        # every run after it, forced or not: the run goes on as a first model would, the
        # failure kept in the execution at $.championFailure, and the count gate still holds.
        unavailable = sfn.Pass(
            self, "ChampionUnavailable", result=sfn.Result.from_object({}), result_path=CHAMPION
        )
        self.champion_transform.state.add_catch(
            unavailable, errors=[sfn.Errors.ALL], result_path=CHAMPION_FAILURE
        )
        unavailable.next(evaluate)
        find_champion.next(
            sfn.Choice(self, "ChampionFound")
            .when(
                sfn.Condition.is_present(f"{CHAMPION_LOOKUP}.values[0]"),
                read_champion.next(self.champion_transform.state).next(compare).next(evaluate),
            )
            .otherwise(no_champion.next(evaluate))
        )
        evaluate.next(then)

    def _cutter(
        self,
        storage: DataStorage,
        bucket: s3.IBucket,
        tiling: TilingSettings,
        image_shape: int,
        imaging: lambda_.ILayerVersion,
    ) -> HandlerFunction:
        """The cut-tiles function and its grants: read the validation manifests and images,
        write and list the run's tiles."""
        cutter = HandlerFunction(
            self,
            "CutTilesFunction",
            name="cut_tiles",
            description="Cuts a run's validation images into tiles for Batch Transform",
            key=storage.key,
            service="cut-tiles",
            contract=cut_tiles.Environment,
            environment={
                "bucket": storage.bucket_name,
                "image_shape": image_shape,
                **tiling.environment,
            },
            timeout=CUT_FUNCTION_TIMEOUT,
            memory_size=CUT_MEMORY_MB,
            layers=[imaging],
        )
        acknowledge_object_prefixes(
            allow(
                cutter.role,
                {
                    "ReadValidationImages": (
                        ["s3:GetObject"],
                        [
                            bucket.arn_for_objects(f"{layout.TRAINING_MANIFESTS}*"),
                            bucket.arn_for_objects(f"{layout.LABELING_IMAGES}*"),
                            bucket.arn_for_objects(f"{TILE_SETS}*"),
                        ],
                    ),
                    # The tiles' manifest is streamed (a multipart upload past 8 MB): a failed
                    # one is aborted rather than left to be billed.
                    "WriteTiles": (
                        ["s3:PutObject", "s3:AbortMultipartUpload"],
                        [bucket.arn_for_objects(f"{TILES}*")],
                    ),
                    "ListTileSets": (
                        ["s3:ListBucket"],
                        [bucket.bucket_arn],
                        {"StringLike": {"s3:prefix": f"{TILE_SETS}*"}},
                    ),
                    "UseTheDataKey": (
                        ["kms:Decrypt", "kms:GenerateDataKey"],
                        [storage.key.key_arn],
                    ),
                },
            ),
            storage.bucket_name,
            {
                layout.TRAINING_MANIFESTS: "Cutting tiles reads each run's validation manifest "
                f"under {layout.TRAINING_MANIFESTS}<run>/.",
                layout.LABELING_IMAGES: "Cutting tiles reads each run's validation images, "
                f"which training read too, under {layout.LABELING_IMAGES}.",
                TILE_SETS: "Cutting tiles reads back the tile sets of a run's earlier "
                f"invocations under {layout.MODEL_ARTIFACTS}<run>/{training.TILE_SETS} to list "
                "every tile in one manifest.",
                TILES: "Cutting tiles writes each run's tiles, tile sets and tile manifest under "
                f"{layout.MODEL_ARTIFACTS}<run>/{training.TILES_FOLDER}.",
            },
        )
        acknowledge(
            cutter.function,
            "Serverless-LambdaDLQ",
            "Cutting tiles is only invoked synchronously by the training state machine, "
            "which retries it and reports its failures.",
        )
        return cutter

    def _cut_tiles(
        self, cutter: HandlerFunction, notifications: RunNotifications, *, then: sfn.IChainable
    ) -> sfn.IChainable:
        """Invoke the cut-tiles function from image 0, then again from where it stopped until
        it says every image is cut; then ``then``. Each invocation cuts at least one image,
        so the loop ends."""
        start = sfn.Pass(
            self,
            "StartCuttingTiles",
            result=sfn.Result.from_object({"next": 0}),
            result_path=TILE_CUT,
        )
        cut = tasks.LambdaInvoke(
            self,
            "CutValidationTiles",
            lambda_function=cutter.function,
            payload=sfn.TaskInput.from_object(
                payload(
                    cut_tiles.CutRequest,
                    run_name=sfn.JsonPath.string_at(RUN_NAME),
                    validation_manifest_uri=sfn.JsonPath.string_at(
                        f"{PREPARED}.validationManifestUri"
                    ),
                    label_attribute=sfn.JsonPath.string_at(f"{PREPARED}.labelAttribute"),
                    next=sfn.JsonPath.number_at(f"{TILE_CUT}.next"),
                )
            ),
            result_selector=result_selector(cut_tiles.CutResponse),
            result_path=TILE_CUT,
            retry_on_service_exceptions=False,
        )
        retry_policies.LAMBDA_SERVICE.apply(cut)
        notifications.catch(cut)
        return start.next(cut).next(
            sfn.Choice(self, "TilesCut")
            .when(sfn.Condition.boolean_equals(f"{TILE_CUT}.done", True), then)
            .otherwise(cut)
        )

    def _find_champion(
        self, parameter_name: str, notifications: RunNotifications
    ) -> tasks.CallAwsService:
        """GetParameters of the active-model record: its value, or none for a first model."""
        find = tasks.CallAwsService(
            self,
            "FindChampion",
            service="ssm",
            action="getParameters",
            parameters={"Names": [parameter_name]},
            iam_resources=[
                cdk.Stack.of(self).format_arn(
                    service="ssm", resource="parameter", resource_name=parameter_name.lstrip("/")
                )
            ],
            iam_action="ssm:GetParameters",
            result_selector={"values.$": "$.Parameters[*].Value"},
            result_path=CHAMPION_LOOKUP,
        )
        retry_policies.SSM_READ.apply(find)
        notifications.catch(find)
        return find
