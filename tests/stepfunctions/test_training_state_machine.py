"""The synthesized training state machine, run through its success and failure paths.

The definition is the one CDK synthesized (``template.Templates``), run by moto's ASL
interpreter (``harness``): SageMaker model/endpoint-config/endpoint calls, SSM and SNS
go to moto's mocks; the Prepare Lambda, the training job and whatever moto's SageMaker
cannot do (UpdateEndpoint, an endpoint that fails) are stubbed per state.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from moto.sagemaker.models import sagemaker_backends

from counting_core.models.evaluation import EvaluationSummary
from counting_core.models.model_record import ActiveModel, ChampionSummary, TilingChoice
from counting_core.models.training import DataNotTrainable, PreparedRun
from stacks.config import load_config
from tests.conftest import cdk_context
from tests.infra.synth import build_app
from tests.stepfunctions import harness
from tests.stepfunctions.harness import Return, Throw, Visits
from tests.stepfunctions.template import ACCOUNT, REGION, Templates

pytestmark = pytest.mark.synth  # every test here builds the CDK app

PREFIX = "object-counting-dev"
ENDPOINT = f"{PREFIX}-counter"
PARAMETER = f"/{PREFIX}/active-model"
BUCKET = f"{PREFIX}-data-{ACCOUNT}-{REGION}"
RUN = f"{PREFIX}-20261126-173000-a1b2c3"
PREVIOUS_RUN = f"{PREFIX}-20261101-090000-0f0f0f"
MANIFEST = f"s3://{BUCKET}/training/requests/street.manifest"
MODEL_DATA = f"s3://{BUCKET}/training/models/{RUN}/output/model.tar.gz"
PREPARED = PreparedRun(
    run_name=RUN,
    label_attribute="vehicles",
    attribute_names=("source-ref", "vehicles"),
    class_map={"0": "car", "1": "person"},
    train_manifest_uri=f"s3://{BUCKET}/training/manifests/{RUN}/train.manifest",
    validation_manifest_uri=f"s3://{BUCKET}/training/manifests/{RUN}/validation.manifest",
    validation_images_uri=f"s3://{BUCKET}/training/manifests/{RUN}/validation-images.manifest",
    images_uri=f"s3://{BUCKET}/training/manifests/{RUN}/images.manifest",
    data_report_uri=f"s3://{BUCKET}/training/manifests/{RUN}/data-report.json",
    hyperparameters={"num_classes": "2", "num_training_samples": "40", "label_width": "350"},
    figures={"num_training_samples": 40, "num_validation_samples": 10},
)
PREPARE_OK = Return({"StatusCode": 200, "Payload": PREPARED.model_dump(by_alias=True)})
# moto's DescribeEndpoint of a name that does not exist fails, as SageMaker's does (no
# documented error name): FindEndpoint tries 5 times (SAGEMAKER_API: 4 retries), then the
# run creates the endpoint.
NOT_FOUND_ATTEMPTS = 5
# The count gate is on by default (training.max_count_wape 0.25); with it off (null),
# EvaluateCounts goes straight on to CreateEndpointConfig (tests/infra/test_training_stack.py).
MAX_COUNT_WAPE = 0.25
PREDICTIONS = f"s3://{BUCKET}/training/models/{RUN}/predictions/"
# No active model yet (a first run): nothing to compare with.
EVALUATED = [
    "CreateModel",
    "PredictValidationImages",
    "FindChampion",
    "ChampionFound",
    "NoChampion",
    "EvaluateCounts",
    "CountGate",
]
# An active model (the champion) is counted on the same images too.
CHAMPION_EVALUATED = [
    "CreateModel",
    "PredictValidationImages",
    "FindChampion",
    "ChampionFound",
    "ReadChampion",
    "PredictWithChampion",
    "CompareWithChampion",
    "EvaluateCounts",
    "CountGate",
]
FIRST_DEPLOYMENT = [
    *EVALUATED,
    "ChampionGate",
    "CreateEndpointConfig",
    "FindEndpoint",
    "CreateEndpoint",
    "WaitForEndpoint",
    "CheckEndpoint",
    "EndpointReady",
]
THROUGH_THE_GATE = [
    "PrepareTrainingData",
    "Train",
    "MetricsReported",
    "FindValidationMap",
    "ValidationMapReported",
    "ReadValidationMap",
    "QualityGate",
]
RECORDED = ["DescribeActiveModel", "SaveActiveModel", "NotifyDeployed", "Deployed"]
# A later run, compared with the active model, that updates the endpoint.
UPDATED_IN_PLACE = [
    *THROUGH_THE_GATE,
    *CHAMPION_EVALUATED,
    "ChampionGate",
    "CreateEndpointConfig",
    "FindEndpoint",
    "EndpointUsable",
    "UpdateEndpoint",
    "WaitForEndpoint",
    "CheckEndpoint",
    "EndpointReady",
    *RECORDED,
]
STOPPED = ["NotifyStopped", "RunStopped"]


def evaluation(**figures) -> EvaluationSummary:
    """What the evaluation Lambda returns; by default a model that counts well enough."""
    return EvaluationSummary(
        images=10,
        best_threshold=0.35,
        mae=0.3,
        wape=0.06,
        mape=0.05,
        exact_accuracy=0.7,
        bias=-0.1,
        report_uri=f"s3://{BUCKET}/training/models/{RUN}/evaluation.json",
        plot_uri=f"s3://{BUCKET}/training/models/{RUN}/evaluation.png",
    ).model_copy(update=figures)


def evaluated(
    summary: EvaluationSummary,
    champion: ChampionSummary | None = None,
    tiling: TilingChoice | None = None,
) -> Return:
    """What the evaluation Lambda returns: the new model's figures, the champion's and what
    it found of tiling (null when counter.tiling is off)."""
    return Return(
        {
            "StatusCode": 200,
            "Payload": {
                **summary.model_dump(by_alias=True),
                "champion": None if champion is None else champion.model_dump(by_alias=True),
                "tiling": None if tiling is None else tiling.model_dump(by_alias=True),
            },
        }
    )


def champion(**figures) -> ChampionSummary:
    """The active model's figures and the new model's on the same images (by default all 10,
    the new one's as ``evaluation()`` gives them); by default the active model's are worse."""
    return ChampionSummary(
        model_name=PREVIOUS_RUN, images=10, best_threshold=0.4, mae=0.5, wape=0.1, bias=0.2,
        challenger_mae=0.3, challenger_wape=0.06, trained_on=0,
    ).model_copy(update=figures)  # fmt: skip


#: What createTransformJob.sync returns: DescribeTransformJob of the completed job.
TRANSFORM_DONE = Return(
    {
        "TransformJobName": RUN,
        "TransformJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:transform-job/{RUN}",
        "TransformJobStatus": "Completed",
        "ModelName": RUN,
        "TransformOutput": {"S3OutputPath": PREDICTIONS, "Accept": "application/json"},
    }
)
CHAMPION_PREDICTIONS = f"s3://{BUCKET}/training/models/{RUN}/champion-predictions/"
#: The active model's job over the same images.
CHAMPION_TRANSFORM_DONE = Return(
    {
        "TransformJobName": f"{RUN}-champion",
        "TransformJobStatus": "Completed",
        "ModelName": PREVIOUS_RUN,
        "TransformOutput": {"S3OutputPath": CHAMPION_PREDICTIONS, "Accept": "application/json"},
    }
)
#: Every run that reaches the evaluation gets these unless a test says otherwise.
EVALUATION_STUBS = {
    "PredictValidationImages": [TRANSFORM_DONE],
    "PredictWithChampion": [CHAMPION_TRANSFORM_DONE],
    "EvaluateCounts": [evaluated(evaluation())],
}


def finished_job(validation_map: float | None = 0.73) -> Return:
    """What createTrainingJob.sync returns: DescribeTrainingJob of the completed job."""
    metrics = [{"MetricName": "train:progress", "Value": 100.0}]
    if validation_map is not None:
        metrics.append({"MetricName": "validation:mAP", "Value": validation_map})
    return Return(
        {
            "TrainingJobName": RUN,
            "TrainingJobStatus": "Completed",
            "SecondaryStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": MODEL_DATA},
            "FinalMetricDataList": metrics,
        }
    )


def endpoint(status: str, config: str, **details) -> Return:
    return Return(
        {"EndpointName": ENDPOINT, "EndpointStatus": status, "EndpointConfigName": config} | details
    )


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> Templates:
    app, _ = build_app(rule_packs=False)
    assert load_config(cdk_context()).training.max_count_wape == MAX_COUNT_WAPE
    assembly = app.synth()
    return Templates(
        {s.stack_name: json.loads(Path(s.template_full_path).read_text()) for s in assembly.stacks}
    )


class Pipeline:
    """The state machine in moto, its topic read through a queue, and moto's services."""

    def __init__(self, templates: Templates) -> None:
        alerts = f"{PREFIX}-alerts"
        (topic,) = templates.resources(alerts, "AWS::SNS::Topic")
        topic_arn = templates.resolve(alerts, {"Ref": topic})
        self.sns = boto3.client("sns", region_name=REGION)
        self.sns.create_topic(Name=topic_arn.rsplit(":", 1)[1])
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.queue = self.sqs.create_queue(QueueName="notifications")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        self.sagemaker = boto3.client("sagemaker", region_name=REGION)
        self.ssm = boto3.client("ssm", region_name=REGION)
        self.stepfunctions = boto3.client("stepfunctions", region_name=REGION)
        self.arn = self.stepfunctions.create_state_machine(
            name=f"{PREFIX}-training",
            definition=json.dumps(templates.definition(f"{PREFIX}-training")),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/training",
        )["stateMachineArn"]

    def run(self, stubs: dict[str, list[harness.Stub] | harness.Visits], **options) -> harness.Run:
        result = harness.run(
            self.stepfunctions,
            self.arn,
            {"manifestUri": MANIFEST},
            name="run",
            stubs={**EVALUATION_STUBS, **stubs},
            **options,
        )
        result.check_requests()
        return result

    def notifications(self) -> list[tuple[str, dict]]:
        messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10)
        bodies = [json.loads(message["Body"]) for message in messages.get("Messages", [])]
        return [(body["Subject"], json.loads(body["Message"])) for body in bodies]

    def active_model(self) -> ActiveModel:
        value = self.ssm.get_parameter(Name=PARAMETER)["Parameter"]["Value"]
        return ActiveModel.model_validate_json(value)

    def deploy_previous_model(self) -> None:
        """An endpoint serving an earlier run's model, and its record."""
        self.sagemaker.create_model(
            ModelName=PREVIOUS_RUN,
            ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/model",
            PrimaryContainer={"Image": "image", "ModelDataUrl": "s3://b/previous.tar.gz"},
        )
        self.sagemaker.create_endpoint_config(
            EndpointConfigName=PREVIOUS_RUN,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": PREVIOUS_RUN,
                    "ServerlessConfig": {"MemorySizeInMB": 4096, "MaxConcurrency": 6},
                }
            ],
        )
        self.sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=PREVIOUS_RUN)
        previous = ActiveModel(
            endpoint_name=ENDPOINT,
            endpoint_config_name=PREVIOUS_RUN,
            model_name=PREVIOUS_RUN,
            # Trained for other classes than this run's: the evaluation decides whether the
            # two compare; the state machine only hands it both maps.
            class_map={"0": "car"},
        )
        self.ssm.put_parameter(Name=PARAMETER, Value=previous.model_dump_json(), Type="String")


def pipeline_definition(pipeline: Pipeline) -> dict:
    described = pipeline.stepfunctions.describe_state_machine(stateMachineArn=pipeline.arn)
    return json.loads(described["definition"])


@pytest.fixture
def pipeline(templates):
    with mock_aws(config=harness.MOTO_CONFIG), harness.interpreter():
        yield Pipeline(templates)


def assert_stopped(pipeline: Pipeline, run: harness.Run, *, error: str, outcome: str, state: str):
    """The run failed with ``error`` and the topic heard why, with a link to the execution."""
    assert run.status == "FAILED"
    assert run.error == error
    ((subject, report),) = pipeline.notifications()
    assert subject == f"{PREFIX}: training run stopped, no model deployed"
    assert report["outcome"] == outcome
    assert report["state"] == state
    assert report["error"] == error
    assert report["cause"] == run.cause
    assert report["request"] == {"manifestUri": MANIFEST}
    assert report["execution"].endswith(":run")
    assert report["console"] == (
        f"https://{REGION}.console.aws.amazon.com/states/home?region={REGION}"
        f"#/v2/executions/details/{report['execution']}"
    )


def test_a_first_run_creates_the_endpoint_and_records_the_model(pipeline):
    run = pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job(validation_map=0.73)],
        }
    )

    assert run.status == "SUCCEEDED", run.cause
    assert run.states() == THROUGH_THE_GATE + FIRST_DEPLOYMENT + RECORDED
    assert run.attempts("FindEndpoint") == NOT_FOUND_ATTEMPTS
    record = pipeline.active_model()
    assert record == ActiveModel(
        endpoint_name=ENDPOINT,
        endpoint_config_name=RUN,
        model_name=RUN,
        training_job_name=RUN,
        validation_map=0.73,
        class_map={"0": "car", "1": "person"},
        label_attribute="vehicles",
        best_threshold=0.35,
        count_mae=0.3,
        count_wape=0.06,
        count_bias=-0.1,
        evaluation_uri=f"s3://{BUCKET}/training/models/{RUN}/evaluation.json",
        deployed_at=record.deployed_at,
        image_shape=512,  # the training image_size hyperparameter
        algorithm="torchvision",
        detector="fasterrcnn_mobilenet_v3_large_fpn",
        champion=None,  # the first model: no active model to compare with
        forced_deploy=None,
    )
    assert record.deployed_at
    # As written: an unforced run's record has no forced_deploy at all.
    assert run.output == json.loads(record.model_dump_json(exclude={"forced_deploy"}))
    assert pipeline.notifications() == [(f"{PREFIX}: new model deployed", run.output)]
    ((evaluate,),) = [run.requests("EvaluateCounts")]
    assert evaluate["Payload"]["champion"] == {}
    # What moto's SageMaker now holds: the run's model, behind a serverless config.
    model = pipeline.sagemaker.describe_model(ModelName=RUN)
    assert model["PrimaryContainer"]["ModelDataUrl"] == MODEL_DATA
    assert model["PrimaryContainer"]["Image"] == (
        f"763104351884.dkr.ecr.{REGION}.amazonaws.com/pytorch-inference:2.6.0-cpu-py312"
    )
    config = pipeline.sagemaker.describe_endpoint_config(EndpointConfigName=RUN)
    (variant,) = config["ProductionVariants"]
    assert variant["ModelName"] == RUN
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 4096, "MaxConcurrency": 6}
    assert pipeline.sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == RUN


def test_the_training_job_gets_the_prepared_data_and_the_merged_hyperparameters(pipeline):
    run = pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job()],
        }
    )

    ((prepare_request,),) = [run.requests("PrepareTrainingData")]
    assert prepare_request["Payload"]["request"] == {"manifestUri": MANIFEST}
    assert prepare_request["Payload"]["executionId"].endswith(":run")
    ((job,),) = [run.requests("Train")]
    assert job["TrainingJobName"] == RUN
    assert job["HyperParameters"] == {
        "max_minutes": "1410",  # max_runtime_hours (24) less 30 minutes
        **load_config(cdk_context()).training.hyperparameters,
        "detector": "fasterrcnn_mobilenet_v3_large_fpn",
        "image_prefix": f"s3://{BUCKET}/labeling/images/",
        "num_classes": "2",
        "label_attribute": "vehicles",
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": job["HyperParameters"]["sagemaker_submit_directory"],
        "sagemaker_region": REGION,
    }
    channels = {channel["ChannelName"]: channel for channel in job["InputDataConfig"]}
    for name, uri in (
        ("train", PREPARED.train_manifest_uri),
        ("validation", PREPARED.validation_manifest_uri),
        ("images", PREPARED.images_uri),
    ):
        assert channels[name]["DataSource"]["S3DataSource"]["S3Uri"] == uri
    assert job["CheckpointConfig"] == {"S3Uri": f"s3://{BUCKET}/training/models/checkpoints/{RUN}/"}
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/training/models/"


def test_a_later_run_updates_the_endpoint_in_place(pipeline):
    pipeline.deploy_previous_model()

    run = pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job()],
            # moto has no UpdateEndpoint: its answer, and the endpoint after it.
            "UpdateEndpoint": [Return({"EndpointArn": f"arn:aws:sagemaker:::endpoint/{ENDPOINT}"})],
            "CheckEndpoint": [endpoint("InService", RUN)],
        }
    )

    assert run.status == "SUCCEEDED", run.cause
    assert run.states() == UPDATED_IN_PLACE
    assert run.requests("UpdateEndpoint") == [{"EndpointName": ENDPOINT, "EndpointConfigName": RUN}]
    assert pipeline.active_model().endpoint_config_name == RUN


def test_an_endpoint_whose_creation_failed_is_deleted_and_created_again(pipeline):
    # A Failed endpoint accepts only DeleteEndpoint: updating it would fail on every run.
    pipeline.deploy_previous_model()
    sagemaker_backends[ACCOUNT][REGION].endpoints[ENDPOINT].endpoint_status = "Failed"

    run = pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job()],
            # moto deleted it at once (DeleteFailedEndpoint ran against it): gone.
        }
    )

    assert run.status == "SUCCEEDED", run.cause
    assert run.states() == [
        *THROUGH_THE_GATE,
        *CHAMPION_EVALUATED,
        "ChampionGate",
        "CreateEndpointConfig",
        "FindEndpoint",
        "EndpointUsable",
        "DeleteFailedEndpoint",
        "WaitForDeletion",
        "CheckDeletion",
        "CreateEndpoint",
        "WaitForEndpoint",
        "CheckEndpoint",
        "EndpointReady",
        *RECORDED,
    ]
    assert run.requests("DeleteFailedEndpoint") == [{"EndpointName": ENDPOINT}]
    (created,) = run.requests("CreateEndpoint")
    assert (created["EndpointName"], created["EndpointConfigName"]) == (ENDPOINT, RUN)
    assert pipeline.active_model().endpoint_config_name == RUN


def test_a_deletion_that_stops_is_reported(pipeline):
    pipeline.deploy_previous_model()
    sagemaker_backends[ACCOUNT][REGION].endpoints[ENDPOINT].endpoint_status = "Failed"
    still_failed = endpoint("Failed", PREVIOUS_RUN, FailureReason="Deletion failed.")

    run = pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job()],
            "DeleteFailedEndpoint": [Return({})],
            "CheckDeletion": [still_failed],
        }
    )

    assert run.states()[-5:] == ["CheckDeletion", "StillDeleting", "EndpointNotDeleted", *STOPPED]
    assert json.loads(run.cause) == still_failed.payload
    assert_stopped(
        pipeline, run, error="EndpointNotDeleted", outcome="failed", state="CheckDeletion"
    )


def test_a_failed_endpoint_that_cannot_be_deleted_is_reported(pipeline):
    pipeline.deploy_previous_model()
    sagemaker_backends[ACCOUNT][REGION].endpoints[ENDPOINT].endpoint_status = "Failed"
    refused = Throw("SageMaker.AmazonSageMakerException", "User is not authorized")

    run = pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job()],
            "DeleteFailedEndpoint": [refused],
        }
    )

    assert run.states()[-4:] == ["DeleteFailedEndpoint", "DeleteFailedEndpointFailed", *STOPPED]
    assert_stopped(
        pipeline,
        run,
        error="DeleteFailedEndpointFailed",
        outcome="failed",
        state="DeleteFailedEndpoint",
    )


def test_bad_data_stops_the_run_before_training(pipeline):
    reason = f"{MANIFEST}: line 3: class_id 7 is not in the class-map (ids 0, 1)"
    lambda_error = json.dumps({"errorType": "DataNotTrainable", "errorMessage": reason})

    run = pipeline.run({"PrepareTrainingData": [Throw(DataNotTrainable.__name__, lambda_error)]})

    assert run.states() == ["PrepareTrainingData", "BadData", *STOPPED]
    assert run.attempts("PrepareTrainingData") == 1  # bad data is not retried
    assert run.cause == lambda_error
    assert_stopped(
        pipeline, run, error="DataNotTrainable", outcome="refused", state="PrepareTrainingData"
    )


def test_lambda_service_errors_are_retried(pipeline):
    busy = Throw("Lambda.TooManyRequestsException", "Rate exceeded")

    run = pipeline.run(
        {
            "PrepareTrainingData": [busy, busy, PREPARE_OK],
            "Train": [finished_job()],
        }
    )

    assert run.status == "SUCCEEDED", run.cause
    assert run.attempts("PrepareTrainingData") == 3


def test_a_failed_training_job_is_reported(pipeline):
    job = {"TrainingJobName": RUN, "TrainingJobStatus": "Failed", "FailureReason": "AlgorithmError"}

    run = pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [Throw("States.TaskFailed", json.dumps(job))],
        }
    )

    assert run.states() == ["PrepareTrainingData", "Train", "TrainFailed", *STOPPED]
    assert run.attempts("Train") == 1  # a job that ran and failed is not started again
    assert run.cause == f"States.TaskFailed: {json.dumps(job)}"
    assert_stopped(pipeline, run, error="TrainFailed", outcome="failed", state="Train")
    with pytest.raises(pipeline.ssm.exceptions.ParameterNotFound):
        pipeline.ssm.get_parameter(Name=PARAMETER)


def test_no_capacity_is_retried_with_the_same_job_name(pipeline):
    no_capacity = Throw(
        "SageMaker.AmazonSageMakerException",
        "The account-level service limit 'ml.p3.2xlarge for spot training job usage' is 0 "
        "(Service: AmazonSageMaker; Status Code: 400; Error Code: ResourceLimitExceeded)",
    )

    run = pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [no_capacity, no_capacity, finished_job()],
        }
    )

    assert run.status == "SUCCEEDED", run.cause
    assert [job["TrainingJobName"] for job in run.requests("Train")] == [RUN] * 3


def test_a_quota_refusal_is_retried_minutes_apart_as_aws_shows(pipeline):
    # AWS's createTrainingJob.sync example retries this name on its own.
    no_quota = Throw(
        "SageMaker.ResourceLimitExceededException",
        "The account-level service limit 'ml.p3.2xlarge for spot training job usage' is 1 "
        "Instances, with current utilization of 1 Instances",
    )

    run = pipeline.run(
        {"PrepareTrainingData": [PREPARE_OK], "Train": [no_quota] * 4 + [finished_job()]}
    )

    assert run.status == "SUCCEEDED", run.cause
    assert run.attempts("Train") == 5
    (retrier,) = [
        retrier
        for retrier in pipeline_definition(pipeline)["States"]["Train"]["Retry"]
        if retrier["ErrorEquals"] == ["SageMaker.ResourceLimitExceededException"]
    ]
    assert (retrier["IntervalSeconds"], retrier["MaxAttempts"]) == (300, 11)


def test_a_quota_that_never_frees_up_is_reported(pipeline):
    no_quota = Throw("SageMaker.ResourceLimitExceededException", "limit 0")

    run = pipeline.run({"PrepareTrainingData": [PREPARE_OK], "Train": [no_quota] * 12})

    assert run.attempts("Train") == 12  # MaxAttempts counts retries: 1 + 11
    assert run.states()[-4:] == ["Train", "TrainFailed", *STOPPED]
    assert_stopped(pipeline, run, error="TrainFailed", outcome="failed", state="Train")


@pytest.mark.parametrize(
    "job",
    [
        {"TrainingJobName": RUN, "TrainingJobStatus": "Completed"},
        {"TrainingJobName": RUN, "TrainingJobStatus": "Completed", "FinalMetricDataList": []},
    ],
    ids=["no metric list", "an empty one"],
)
def test_a_job_without_metrics_is_reported_not_stuck(pipeline, job):
    run = pipeline.run({"PrepareTrainingData": [PREPARE_OK], "Train": [Return(job)]})

    assert run.states()[-5:] == ["Train", "MetricsReported", "ValidationMapMissing", *STOPPED]
    assert_stopped(
        pipeline, run, error="ValidationMapMissing", outcome="refused", state="QualityGate"
    )


@pytest.mark.parametrize(
    ("validation_map", "error", "cause"),
    [
        (
            0.31,
            "QualityGateNotMet",
            "validation:mAP 0.31 is below the minimum 0.5; nothing was deployed, the endpoint "
            "keeps its current model.",
        ),
        (
            None,
            "ValidationMapMissing",
            "The training job reported no validation:mAP; nothing was deployed.",
        ),
    ],
    ids=["below the minimum", "not reported"],
)
def test_the_quality_gate_refuses_a_weak_model(pipeline, validation_map, error, cause):
    pipeline.deploy_previous_model()

    run = pipeline.run(
        {"PrepareTrainingData": [PREPARE_OK], "Train": [finished_job(validation_map)]}
    )

    assert run.cause == cause
    assert run.states()[-3:] == [error, *STOPPED]
    assert "CreateModel" not in run.states()
    assert_stopped(pipeline, run, error=error, outcome="refused", state="QualityGate")
    assert pipeline.active_model().endpoint_config_name == PREVIOUS_RUN


def test_a_model_at_the_minimum_passes_the_gate(pipeline):
    run = pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job(validation_map=0.5)],
        }
    )

    assert run.status == "SUCCEEDED", run.cause


@pytest.mark.parametrize(
    "after_update",
    [
        endpoint("Failed", RUN, FailureReason="The model container failed to start."),
        # A failed update leaves the endpoint in service on the config it had.
        endpoint("InService", PREVIOUS_RUN),
    ],
    ids=["endpoint failed", "update rolled back"],
)
def test_a_failed_deployment_is_reported_and_the_record_kept(pipeline, after_update):
    pipeline.deploy_previous_model()

    run = pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job()],
            "UpdateEndpoint": [Return({"EndpointArn": f"arn:aws:sagemaker:::endpoint/{ENDPOINT}"})],
            "CheckEndpoint": [after_update],
        }
    )

    assert run.states()[-5:] == ["CheckEndpoint", "EndpointReady", "EndpointNotDeployed", *STOPPED]
    assert json.loads(run.cause) == after_update.payload
    assert_stopped(
        pipeline, run, error="EndpointNotDeployed", outcome="failed", state="CheckEndpoint"
    )
    assert pipeline.active_model().endpoint_config_name == PREVIOUS_RUN


def test_an_endpoint_being_updated_is_waited_for(pipeline):
    pipeline.deploy_previous_model()
    # moto has no UpdateEndpoint: the stub answers, and moto's endpoint is moved along by
    # hand, "Updating" until the second wait, then in service on the run's config.
    moto_endpoint = sagemaker_backends[ACCOUNT][REGION].endpoints[ENDPOINT]
    moto_endpoint.endpoint_status = "Updating"
    waits = []

    def finish_the_update_on_the_second_wait() -> None:
        waits.append(moto_endpoint.endpoint_status)
        if len(waits) == 2:
            moto_endpoint.endpoint_status = "InService"
            moto_endpoint.endpoint_config_name = RUN

    run = pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job()],
            "UpdateEndpoint": [Return({"EndpointArn": f"arn:aws:sagemaker:::endpoint/{ENDPOINT}"})],
        },
        on_wait=finish_the_update_on_the_second_wait,
    )

    assert run.status == "SUCCEEDED", run.cause
    waiting = ["WaitForEndpoint", "CheckEndpoint", "EndpointReady"]
    assert run.states()[-10:] == ["UpdateEndpoint", *waiting, *waiting, *RECORDED][-10:]
    assert run.states().count("WaitForEndpoint") == 2


# --- Count evaluation: Batch Transform, the evaluation Lambda and the count gate -----------


def test_the_new_model_counts_the_validation_images_before_any_endpoint_changes(pipeline):
    run = pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job()],
        }
    )

    assert run.status == "SUCCEEDED", run.cause
    ((job,),) = [run.requests("PredictValidationImages")]  # valid for CreateTransformJob
    assert job["TransformJobName"] == RUN
    assert job["ModelName"] == RUN
    assert job["TransformInput"] == {
        "DataSource": {
            "S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": PREPARED.validation_images_uri}
        },
        "ContentType": "application/x-image",
        "CompressionType": "None",
        "SplitType": "None",
    }
    assert job["TransformOutput"]["S3OutputPath"] == PREDICTIONS
    assert job["TransformResources"]["InstanceType"] == "ml.m5.xlarge"
    ((evaluate,),) = [run.requests("EvaluateCounts")]
    assert evaluate["Payload"] == {
        "runName": RUN,
        "validationManifestUri": PREPARED.validation_manifest_uri,
        "labelAttribute": "vehicles",
        "classMap": {"0": "car", "1": "person"},  # Prepare's, from the whole manifest
        "predictionsUri": PREDICTIONS,
        "champion": {},  # no active model yet
    }


@pytest.mark.parametrize(
    ("wape", "cause"),
    [
        (
            0.31,
            "count error (WAPE) 0.31 at the calibrated threshold 0.35 is above the maximum 0.25: "
            "MAE 0.3 objects per image, bias -0.1, over 10 validation images (report: "
            f"s3://{BUCKET}/training/models/{RUN}/evaluation.json); nothing was deployed, the "
            "endpoint keeps its current model.",
        ),
        (
            None,  # no validation image held an object: nothing shows the counts are right
            "count error (WAPE) null at the calibrated threshold 0.35 is above the maximum 0.25: "
            "MAE 0.3 objects per image, bias -0.1, over 10 validation images (report: "
            f"s3://{BUCKET}/training/models/{RUN}/evaluation.json); nothing was deployed, the "
            "endpoint keeps its current model.",
        ),
    ],
    ids=["above the maximum", "not measurable"],
)
def test_the_count_gate_refuses_a_model_that_miscounts(pipeline, wape, cause):
    pipeline.deploy_previous_model()

    run = pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job()],
            "EvaluateCounts": [evaluated(evaluation(wape=wape))],
        }
    )

    assert run.states()[-6:] == [*CHAMPION_EVALUATED, "CountGateNotMet", *STOPPED][-6:]
    assert "CreateEndpointConfig" not in run.states()
    assert run.cause == cause
    assert_stopped(pipeline, run, error="CountGateNotMet", outcome="refused", state="CountGate")
    assert pipeline.active_model().endpoint_config_name == PREVIOUS_RUN


def test_a_model_at_the_maximum_count_error_is_deployed(pipeline):
    run = pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job()],
            "EvaluateCounts": [evaluated(evaluation(wape=MAX_COUNT_WAPE))],
        }
    )

    assert run.status == "SUCCEEDED", run.cause
    assert pipeline.active_model().count_wape == MAX_COUNT_WAPE


def test_a_failed_transform_job_is_reported_and_nothing_deployed(pipeline):
    pipeline.deploy_previous_model()
    job = {
        "TransformJobName": RUN,
        "TransformJobStatus": "Failed",
        "FailureReason": "ClientError: See job logs for more information",
    }

    run = pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job()],
            "PredictValidationImages": [Throw("States.TaskFailed", json.dumps(job))],
        }
    )

    assert run.states()[-5:] == [
        "CreateModel",
        "PredictValidationImages",
        "PredictValidationImagesFailed",
        *STOPPED,
    ]
    assert run.attempts("PredictValidationImages") == 1  # a job that ran and failed
    assert run.cause == f"States.TaskFailed: {json.dumps(job)}"
    assert_stopped(
        pipeline,
        run,
        error="PredictValidationImagesFailed",
        outcome="failed",
        state="PredictValidationImages",
    )
    assert pipeline.active_model().endpoint_config_name == PREVIOUS_RUN


def test_no_transform_capacity_is_retried_with_the_same_job_name(pipeline):
    no_capacity = Throw(
        "SageMaker.ResourceLimitExceededException",
        "The account-level service limit 'ml.m5.xlarge for transform job usage' is 0",
    )

    run = pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job()],
            "PredictValidationImages": [no_capacity, no_capacity, TRANSFORM_DONE],
        }
    )

    assert run.status == "SUCCEEDED", run.cause
    assert [job["TransformJobName"] for job in run.requests("PredictValidationImages")] == [RUN] * 3


def test_an_evaluation_that_cannot_be_made_is_reported(pipeline):
    reason = f"run {RUN}: no response for image s3://{BUCKET}/labeling/images/a.jpg"
    lambda_error = json.dumps({"errorType": "EvaluationFailed", "errorMessage": reason})

    run = pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job()],
            "EvaluateCounts": [Throw("EvaluationFailed", lambda_error)],
        }
    )

    assert run.states()[-4:] == ["EvaluateCounts", "EvaluateCountsFailed", *STOPPED]
    assert run.attempts("EvaluateCounts") == 1  # the data stays as it is: not retried
    assert run.cause == f"EvaluationFailed: {lambda_error}"
    assert_stopped(
        pipeline, run, error="EvaluateCountsFailed", outcome="failed", state="EvaluateCounts"
    )


# --- Champion and challenger: deploy only a model that counts no worse than the active one ---


@pytest.mark.parametrize(
    "champion_mae",
    [0.5, 0.3],  # the new model's MAE is 0.3: better, then equal ("no worse")
    ids=["better", "equal"],
)
def test_a_challenger_no_worse_than_the_active_model_replaces_it(pipeline, champion_mae):
    pipeline.deploy_previous_model()
    active = champion(mae=champion_mae)

    run = pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job()],
            "EvaluateCounts": [evaluated(evaluation(), active)],
            "UpdateEndpoint": [Return({"EndpointArn": f"arn:aws:sagemaker:::endpoint/{ENDPOINT}"})],
            "CheckEndpoint": [endpoint("InService", RUN)],
        }
    )

    assert run.status == "SUCCEEDED", run.cause
    assert run.states() == UPDATED_IN_PLACE
    # The active model (the record's model_name) counts the same images in its own job.
    ((job,),) = [run.requests("PredictWithChampion")]
    assert job["TransformJobName"] == f"{RUN}-champion"
    assert job["ModelName"] == PREVIOUS_RUN
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == (
        PREPARED.validation_images_uri
    )
    assert job["TransformOutput"]["S3OutputPath"] == CHAMPION_PREDICTIONS
    ((evaluate,),) = [run.requests("EvaluateCounts")]
    assert evaluate["Payload"]["champion"] == {
        "modelName": PREVIOUS_RUN,
        "classMap": {"0": "car"},
        "predictionsUri": CHAMPION_PREDICTIONS,
    }
    record = pipeline.active_model()
    assert record.model_name == RUN
    assert (record.count_mae, record.champion) == (0.3, active)
    assert record.forced_deploy is None


def test_a_champion_that_cannot_run_leaves_the_run_to_its_count_gate(pipeline):
    # The record names a model deleted since (or whose job fails): the run must not stop at
    # every later attempt, forced or not. It goes on without a comparison, as a first model.
    pipeline.deploy_previous_model()
    gone = {
        "FailureReason": f"Could not find model {PREVIOUS_RUN}.",
        "TransformJobStatus": "Failed",
    }

    run = pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job()],
            "PredictWithChampion": [Throw("States.TaskFailed", json.dumps(gone))],
            "EvaluateCounts": [evaluated(evaluation(), None)],
            "UpdateEndpoint": [Return({"EndpointArn": f"arn:aws:sagemaker:::endpoint/{ENDPOINT}"})],
            "CheckEndpoint": [endpoint("InService", RUN)],
        }
    )

    assert run.status == "SUCCEEDED", run.cause
    assert "ChampionUnavailable" in run.states()
    assert "CompareWithChampion" not in run.states()
    ((evaluate,),) = [run.requests("EvaluateCounts")]
    assert evaluate["Payload"]["champion"] == {}  # evaluated as a first model is
    assert pipeline.active_model().model_name == RUN


def test_a_challenger_worse_than_the_active_model_is_refused(pipeline):
    pipeline.deploy_previous_model()

    run = pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job()],
            # MAE 0.3 against the active model's 0.25 on the same 10 images: worse.
            "EvaluateCounts": [evaluated(evaluation(), champion(mae=0.25, wape=0.05))],
        }
    )

    assert run.states()[-5:] == ["CountGate", "ChampionGate", "ChampionNotBeaten", *STOPPED]
    assert "CreateEndpointConfig" not in run.states()
    assert run.cause == (
        "count MAE 0.3 objects per image on the 10 validation images the active model did not "
        f"train on (left out: 0) is worse than the active model {PREVIOUS_RUN} with 0.25 on the "
        "same images (WAPE 0.06 against 0.05; report: "
        f"s3://{BUCKET}/training/models/{RUN}/evaluation.json); nothing was deployed, the "
        "endpoint keeps the active model. To deploy it anyway, set training.force_deploy to "
        "the reason."
    )
    assert_stopped(
        pipeline, run, error="ChampionNotBeaten", outcome="refused", state="ChampionGate"
    )
    assert pipeline.active_model().model_name == PREVIOUS_RUN


def test_the_comparison_is_on_the_images_the_active_model_did_not_train_on(pipeline):
    pipeline.deploy_previous_model()
    # Over all 10 validation images the new model's MAE (0.3) is above the active model's
    # 0.25; but 6 of them trained the active model. On the other 4 the new model counts with
    # MAE 0.2 and the active one with 0.25: the new model is better where both are fair.
    fair = champion(images=4, trained_on=6, mae=0.25, wape=0.05, challenger_mae=0.2)

    run = pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job()],
            "EvaluateCounts": [evaluated(evaluation(), fair)],
            "UpdateEndpoint": [Return({"EndpointArn": f"arn:aws:sagemaker:::endpoint/{ENDPOINT}"})],
            "CheckEndpoint": [endpoint("InService", RUN)],
        }
    )

    assert run.status == "SUCCEEDED", run.cause
    assert pipeline.active_model().model_name == RUN
    assert pipeline.active_model().champion == fair


FORCED = "rolling back the class map of labeling job street-7"


@pytest.fixture(scope="module")
def forced_templates() -> Templates:
    app, _ = build_app(rule_packs=False, **{"counting.training.force_deploy": FORCED})
    assembly = app.synth()
    return Templates(
        {s.stack_name: json.loads(Path(s.template_full_path).read_text()) for s in assembly.stacks}
    )


def test_force_deploy_deploys_a_worse_challenger_and_records_why(forced_templates):
    with mock_aws(config=harness.MOTO_CONFIG), harness.interpreter():
        pipeline = Pipeline(forced_templates)
        pipeline.deploy_previous_model()
        worse = champion(mae=0.25, wape=0.05)

        run = pipeline.run(
            {
                "PrepareTrainingData": [PREPARE_OK],
                "Train": [finished_job()],
                "EvaluateCounts": [evaluated(evaluation(), worse)],
                "UpdateEndpoint": [
                    Return({"EndpointArn": f"arn:aws:sagemaker:::endpoint/{ENDPOINT}"})
                ],
                "CheckEndpoint": [endpoint("InService", RUN)],
            }
        )

        assert run.status == "SUCCEEDED", run.cause
        # Still measured side by side; no comparison.
        assert "PredictWithChampion" in run.states()
        assert "ChampionGate" not in run.states()
        assert run.states()[run.states().index("CountGate") + 1] == "CreateEndpointConfig"
        record = pipeline.active_model()
        assert record.model_name == RUN
        assert (record.count_mae, record.champion) == (0.3, worse)
        assert record.forced_deploy == FORCED


# --- counter.tiling on: the new model counts the validation images in tiles too ---

TILE_SETS = f"s3://{BUCKET}/training/models/{RUN}/tiles/tile-sets/"
TILES_MANIFEST = f"s3://{BUCKET}/training/models/{RUN}/tiles/tiles.manifest"
TILE_PREDICTIONS = f"s3://{BUCKET}/training/models/{RUN}/tile-predictions/"


def cut(*, done: bool, next_image: int) -> Return:
    """What the cut-tiles Lambda returns after cutting the images before ``next_image``."""
    return Return(
        {
            "StatusCode": 200,
            "Payload": {
                "done": done,
                "next": next_image,
                "images": 10,
                "tileSetsUri": TILE_SETS,
                "manifestUri": TILES_MANIFEST if done else None,
            },
        }
    )


TILES_TRANSFORM_DONE = Return(
    {
        "TransformJobName": f"{RUN}-tiles",
        "TransformJobStatus": "Completed",
        "ModelName": RUN,
        "TransformOutput": {"S3OutputPath": TILE_PREDICTIONS, "Accept": "application/json"},
    }
)


@pytest.fixture(scope="module")
def tiled_templates() -> Templates:
    app, _ = build_app(rule_packs=False, **{"counting.counter.tiling.mode": "on"})
    assembly = app.synth()
    return Templates(
        {s.stack_name: json.loads(Path(s.template_full_path).read_text()) for s in assembly.stacks}
    )


@pytest.fixture
def tiled_pipeline(tiled_templates):
    with mock_aws(config=harness.MOTO_CONFIG), harness.interpreter():
        yield Pipeline(tiled_templates)


def test_with_tiling_on_the_tiles_are_cut_until_done_counted_and_the_choice_recorded(
    tiled_pipeline,
):
    # Tiles found what whole images missed: MAE 0.1 against 0.3.
    choice = TilingChoice(
        tile=True, images=10, best_threshold=0.45, mae=0.1, wape=0.02, untiled_mae=0.3
    )

    run = tiled_pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job()],
            # The first invocation ran out of time after 6 of the 10 images.
            "CutValidationTiles": Visits(
                [cut(done=False, next_image=6), cut(done=True, next_image=10)]
            ),
            "PredictValidationTiles": [TILES_TRANSFORM_DONE],
            "EvaluateCounts": [evaluated(evaluation(), None, choice)],
        }
    )

    assert run.status == "SUCCEEDED", run.cause
    states = run.states()
    start = states.index("PredictValidationImages")
    assert states[start : start + 7] == [
        "PredictValidationImages",
        "StartCuttingTiles",
        "CutValidationTiles",
        "TilesCut",
        "CutValidationTiles",
        "TilesCut",
        "PredictValidationTiles",
    ]
    assert states[start + 7] == "FindChampion"
    first, second = run.requests("CutValidationTiles")
    assert first["Payload"] == {
        "runName": RUN,
        "validationManifestUri": PREPARED.validation_manifest_uri,
        "labelAttribute": "vehicles",
        "next": 0,
    }
    assert second["Payload"]["next"] == 6  # resumed where the first stopped
    ((job,),) = [run.requests("PredictValidationTiles")]
    assert job["TransformJobName"] == f"{RUN}-tiles"
    assert job["ModelName"] == RUN
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == TILES_MANIFEST
    assert job["TransformOutput"]["S3OutputPath"] == TILE_PREDICTIONS
    ((evaluate,),) = [run.requests("EvaluateCounts")]
    assert evaluate["Payload"]["tiles"] == {
        "tileSetsUri": TILE_SETS,
        "predictionsUri": TILE_PREDICTIONS,
    }
    assert evaluate["Payload"]["predictionsUri"] == PREDICTIONS
    record = tiled_pipeline.active_model()
    assert record.tiling == choice
    assert record.tiling_measured is True


def test_a_failed_tile_transform_is_reported_and_nothing_deployed(tiled_pipeline):
    job = {
        "TransformJobName": f"{RUN}-tiles",
        "TransformJobStatus": "Failed",
        "FailureReason": "ClientError: See job logs for more information",
    }

    run = tiled_pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job()],
            "CutValidationTiles": [cut(done=True, next_image=10)],
            "PredictValidationTiles": [Throw("States.TaskFailed", json.dumps(job))],
        }
    )

    assert run.states()[-4:] == [
        "PredictValidationTiles",
        "PredictValidationTilesFailed",
        *STOPPED,
    ]
    assert run.attempts("PredictValidationTiles") == 1
    assert "EvaluateCounts" not in run.states()
    assert_stopped(
        tiled_pipeline,
        run,
        error="PredictValidationTilesFailed",
        outcome="failed",
        state="PredictValidationTiles",
    )


def test_images_that_cannot_be_cut_are_reported(tiled_pipeline):
    reason = f"run {RUN}: s3://{BUCKET}/labeling/images/a.jpg: not a JPEG or PNG image"
    lambda_error = json.dumps({"errorType": "CutFailed", "errorMessage": reason})

    run = tiled_pipeline.run(
        {
            "PrepareTrainingData": [PREPARE_OK],
            "Train": [finished_job()],
            "CutValidationTiles": [Throw("CutFailed", lambda_error)],
        }
    )

    assert run.states()[-4:] == ["CutValidationTiles", "CutValidationTilesFailed", *STOPPED]
    assert run.attempts("CutValidationTiles") == 1  # the images stay as they are
    assert_stopped(
        tiled_pipeline,
        run,
        error="CutValidationTilesFailed",
        outcome="failed",
        state="CutValidationTiles",
    )
