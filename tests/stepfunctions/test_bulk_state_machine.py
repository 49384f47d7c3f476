"""The synthesized bulk-counting state machine, run with its Lambda, on success and failure.

The definition is the one CDK synthesized, adapted for moto's interpreter as
``distributed.for_interpreter`` says (batches of one item; failure tolerance not
enforced). The bulk Lambda's handler runs in process against moto's S3, DynamoDB and
EventBridge; the parameter store, SageMaker's model calls and SNS are moto's own. Only
Batch Transform is a stand-in: its ``.sync`` answer is stubbed, and its outputs appear
when the run's manifest is written, one per image the test's model answers for.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from adapters.result_store import StoreClients
from counting_core.contracts.bulk_counter import Environment
from lambdas.bulk_counter import handler as bulk_handler
from tests.core.fake_detector import FakeDetector, grid, jpeg, scene
from tests.infra.synth import build_app
from tests.lambdas.bulk_harness import TILING_OFF, resizing_model
from tests.lambdas.conftest import (
    HAND_CHECKED_RESPONSE,
    image_bytes,
    make_results_table,
)
from tests.schema_checks import assert_valid, capture_result_events, sqs_events
from tests.stepfunctions import harness
from tests.stepfunctions.distributed import for_interpreter, lambdas_in_process
from tests.stepfunctions.harness import Return, Throw
from tests.stepfunctions.template import ACCOUNT, REGION, Templates

pytestmark = pytest.mark.synth  # every test here builds the CDK app

PREFIX = "object-counting-dev"
STACK = f"{PREFIX}-bulk-counting"
BUCKET = f"{PREFIX}-data-{ACCOUNT}-{REGION}"
PARAMETER = f"/{PREFIX}/active-model"
MODEL_NAME = f"{PREFIX}-20261101-090000-0f0f0f"
ACTIVE_MODEL = {
    "endpoint_name": f"{PREFIX}-counter",
    "endpoint_config_name": MODEL_NAME,
    "model_name": MODEL_NAME,
    "class_map": {"0": "car", "1": "person"},
}
MODEL_DATA = f"s3://{BUCKET}/training/models/{MODEL_NAME}/output/model.tar.gz"
ANSWER = HAND_CHECKED_RESPONSE
REQUEST = {"bucket": BUCKET, "prefix": "archive/2026/"}
IMAGES = ("archive/2026/cam1.png", "archive/2026/cam2.png")
ON_THE_WAY = ["CheckRequest", "NameRun", "ReadActiveModel", "SelectImages", "WriteManifest"]
TRANSFORMED = [
    "DescribeActiveModel",
    "CreateTransformModel",
    "Transform",
    "DeleteTransformModel",
    "CountResults",
]


def finished_job(status: str = "Completed") -> dict:
    """DescribeTransformJob of the ended job, as createTransformJob.sync returns it."""
    return {
        "TransformJobName": "run",
        "TransformJobStatus": status,
        "TransformStartTime": 1_795_000_000_000,
        "TransformEndTime": 1_795_000_900_000,
        "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
        **({"FailureReason": "ClientError: See job logs"} if status == "Failed" else {}),
    }


@pytest.fixture(scope="module")
def templates() -> Templates:
    app, _ = build_app(rule_packs=False)
    assembly = app.synth()
    return Templates(
        {s.stack_name: json.loads(Path(s.template_full_path).read_text()) for s in assembly.stacks}
    )


class BulkRun:
    """The state machine in moto with its Lambda in process, and what a run leaves."""

    def __init__(self, templates: Templates, monkeypatch) -> None:
        for name, value in {
            "POWERTOOLS_SERVICE_NAME": "bulk-counting",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }.items():
            monkeypatch.setenv(name, value)
        self.s3 = boto3.client("s3", region_name=REGION)
        self.s3.create_bucket(Bucket=BUCKET)
        self.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        make_results_table("results")
        self.sqs = boto3.client("sqs", region_name=REGION)
        (topic,) = templates.resources(f"{PREFIX}-alerts", "AWS::SNS::Topic")
        topic_arn = templates.resolve(f"{PREFIX}-alerts", {"Ref": topic})
        sns = boto3.client("sns", region_name=REGION)
        sns.create_topic(Name=topic_arn.rsplit(":", 1)[1])
        self.notices = self.sqs.create_queue(QueueName="notifications")["QueueUrl"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=self._arn(self.notices))
        self.events = capture_result_events(
            boto3.client("events", region_name=REGION), self.sqs, f"{PREFIX}.counting"
        )
        self.sagemaker = boto3.client("sagemaker", region_name=REGION)
        self.stepfunctions = boto3.client("stepfunctions", region_name=REGION)
        self.arn = self.stepfunctions.create_state_machine(
            name=STACK,
            definition=json.dumps(for_interpreter(templates.definition(STACK))),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/bulk",
        )["stateMachineArn"]
        self._variables = {
            "DATA_BUCKET": BUCKET,
            "RESULTS_TABLE": "results",
            "SCORE_THRESHOLD": "0.2",
            "ANNOTATE": "false",
            "MAX_PAYLOAD_BYTES": str(6 * 1024 * 1024),
            "EVENT_SOURCE": f"{PREFIX}.counting",
            **TILING_OFF,
            "POWERTOOLS_SERVICE_NAME": "bulk-counting",
            "POWERTOOLS_METRICS_NAMESPACE": "ObjectCounting",
        }
        self._clients = StoreClients(
            s3=self.s3,
            dynamodb=boto3.client("dynamodb", region_name=REGION),
            events=boto3.client("events", region_name=REGION),
        )
        self.configure()
        # The model answers for each image; None: the transform fails on it (no output).
        self.model: Callable[[str], bytes | None] = lambda _key: json.dumps(ANSWER).encode()

    def configure(self, **variables: str) -> None:
        """The bulk Lambda built from its environment, with ``variables`` changed."""
        environment = Environment.model_validate({**self._variables, **variables})
        self.counter = bulk_handler.build(environment, self._clients)

    def _arn(self, queue_url: str) -> str:
        return self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]

    def deploy_model(self) -> None:
        self.sagemaker.create_model(
            ModelName=MODEL_NAME,
            ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/model",
            PrimaryContainer={"Image": "object-detection:1", "ModelDataUrl": MODEL_DATA},
        )
        boto3.client("ssm", region_name=REGION).put_parameter(
            Name=PARAMETER, Value=json.dumps(ACTIVE_MODEL), Type="String"
        )

    def upload(self, *keys: str) -> None:
        for key in keys:
            self.s3.put_object(Bucket=BUCKET, Key=key, Body=image_bytes())

    def _lambda(self, payload: dict) -> dict:
        answer = bulk_handler.run_step(self.counter, payload)
        if payload["action"] == "manifest":
            self._transform(payload["run"])
        return answer

    def _transform(self, run: str) -> None:
        """Batch Transform's stand-in: one ``<key>.out`` per image of the manifest."""
        manifest = json.loads(
            self.s3.get_object(Bucket=BUCKET, Key=f"bulk/{run}/transform.manifest")["Body"].read()
        )
        for key in manifest[1:]:
            output = self.model(key)
            if output is not None:
                self.s3.put_object(Bucket=BUCKET, Key=f"bulk/{run}/outputs/{key}.out", Body=output)

    def run(self, stubs: dict, request: dict | None = None, name: str = "run") -> harness.Run:
        with lambdas_in_process(self._lambda):
            result = harness.run(
                self.stepfunctions,
                self.arn,
                REQUEST if request is None else request,
                name=name,
                stubs=stubs,
            )
        result.check_requests()
        return result

    def notifications(self) -> list[tuple[str, dict]]:
        bodies = sqs_events(self.sqs, self.notices)
        return [(body["Subject"], json.loads(body["Message"])) for body in bodies]

    def result_events(self) -> list[dict]:
        return sqs_events(self.sqs, self.events)

    def result(self, key: str) -> dict:
        body = self.s3.get_object(Bucket=BUCKET, Key=f"results/{key}.json")["Body"]
        return json.loads(body.read())


@pytest.fixture
def bulk(templates, monkeypatch):
    with mock_aws(config=harness.MOTO_CONFIG), harness.interpreter():
        yield BulkRun(templates, monkeypatch)


def test_a_backlog_is_counted_summarized_and_announced(bulk):
    bulk.deploy_model()
    bulk.upload(*IMAGES)

    run = bulk.run({"Transform": [Return(finished_job())]})

    assert (run.status, run.error) == ("SUCCEEDED", None)
    assert run.states()[:5] == ON_THE_WAY
    assert [s for s in run.states() if s in TRANSFORMED] == TRANSFORMED
    assert run.states()[-3:] == ["AnythingCounted", "NotifyFinished", "RunFinished"]
    summary = run.output
    assert summary["outcome"] == "complete"
    assert (summary["images_listed"], summary["counted"], summary["failed"]) == (2, 2, 0)
    assert summary["objects_by_class"] == {"car": 4, "person": 2}
    assert summary["instance_hours"] == 0.25
    assert bulk.notifications() == [(f"{PREFIX}: bulk counting run finished", summary)]

    (job,) = run.requests("Transform")
    run_name = job["TransformJobName"]
    assert run_name.startswith(f"{PREFIX}-bulk-")
    assert len(run_name) == len(PREFIX) + 14
    assert job["ModelName"] == run_name
    assert job["TransformInput"]["DataSource"]["S3DataSource"] == {
        "S3DataType": "ManifestFile",
        "S3Uri": f"s3://{BUCKET}/bulk/{run_name}/transform.manifest",
    }
    assert job["TransformOutput"]["S3OutputPath"] == f"s3://{BUCKET}/bulk/{run_name}/outputs/"
    assert job["TransformResources"]["InstanceType"] == "ml.m5.xlarge"
    (copy,) = run.requests("CreateTransformModel")
    assert (copy["ModelName"], copy["PrimaryContainer"]["ModelDataUrl"]) == (run_name, MODEL_DATA)
    # The run's copy is deleted once the job has ended; the deployed model stays.
    assert run.requests("DeleteTransformModel") == [{"ModelName": run_name}]
    models = [model["ModelName"] for model in bulk.sagemaker.list_models()["Models"]]
    assert models == [MODEL_NAME]

    for key in IMAGES:
        document = bulk.result(key)
        assert (document["pipeline"], document["count"]) == ("bulk", 3)
        assert document["model"]["model_name"] == MODEL_NAME
    events = bulk.result_events()
    assert sorted(event["detail"]["image"] for event in events) == [
        f"s3://{BUCKET}/{key}" for key in IMAGES
    ]
    for event in events:
        assert_valid("image-counted-event.json", event)


def test_with_tiling_on_a_scene_of_small_objects_is_counted_in_tiles(bulk):
    # 2,048 x 1,600 px, a 20 px square every 64 px (800): the model resizes each input to
    # 512 px and sees squares 14 px wide or more, so it finds none in the image whole and
    # every one in its 5 x 4 native tiles.
    squares = grid((2048, 1600), side=20, pitch=64, margin=10)
    bulk.s3.put_object(
        Bucket=BUCKET, Key="archive/2026/lot.jpg", Body=jpeg(scene((2048, 1600), squares))
    )
    bulk.deploy_model()
    bulk.configure(TILING="on")
    answer = resizing_model(FakeDetector(min_width=14))
    bulk.model = lambda key: answer(bulk.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    run = bulk.run({"Transform": [Return(finished_job())]})

    assert (run.status, run.error) == ("SUCCEEDED", None)
    summary = run.output
    assert (summary["outcome"], summary["counted"], summary["failed"]) == ("complete", 1, 0)
    assert summary["objects_by_class"] == {"car": 800}
    document = bulk.result("archive/2026/lot.jpg")
    assert (document["count"], document["tiling"]["tiles"]) == (800, 20)
    assert document["tiling"]["endpoint_calls"] == 21
    (event,) = bulk.result_events()
    assert event["detail"]["tiles"] == 20
    assert_valid("image-counted-event.json", event)


def models_left(bulk: BulkRun) -> list[str]:
    return [model["ModelName"] for model in bulk.sagemaker.list_models()["Models"]]


def test_images_the_transform_failed_on_end_a_partial_run_with_them_counted_as_failed(bulk):
    bulk.deploy_model()
    bulk.upload(*IMAGES)
    bulk.model = lambda key: None if key.endswith("cam2.png") else json.dumps(ANSWER).encode()
    failed = Throw("States.TaskFailed", json.dumps(finished_job("Failed")))

    run = bulk.run({"Transform": [failed]})

    assert run.status == "SUCCEEDED"
    assert [s for s in run.states() if s in TRANSFORMED] == TRANSFORMED
    summary = run.output
    assert (summary["outcome"], summary["counted"], summary["failed"]) == ("partial", 1, 1)
    assert summary["transform_status"] == "Failed"
    assert summary["transform_failure"] == "ClientError: See job logs"
    assert models_left(bulk) == [MODEL_NAME]
    ((subject, message),) = bulk.notifications()
    assert (subject, message["failed"]) == (f"{PREFIX}: bulk counting run finished", 1)


def test_a_transform_job_that_cannot_be_started_stops_the_run_and_deletes_its_model(bulk):
    # After SAGEMAKER_JOB_API's 3 retries. The job may have started all the same (an answer
    # lost on the way): its outputs are not counted as final; its model copy is deleted on
    # the way to the report.
    bulk.deploy_model()
    bulk.upload(*IMAGES)
    refused = [Throw("SageMaker.AmazonSageMakerException", "Rate exceeded")] * 4

    run = bulk.run({"Transform": refused})

    assert (run.status, run.error) == ("FAILED", "TransformFailed")
    assert run.attempts("Transform") == 4
    assert "CountResults" not in run.states()
    (copy,) = run.requests("CreateTransformModel")
    assert run.requests("DeleteModelOfStoppedRun") == [{"ModelName": copy["ModelName"]}]
    assert models_left(bulk) == [MODEL_NAME]
    ((subject, report),) = bulk.notifications()
    assert subject == f"{PREFIX}: bulk counting run stopped"
    assert report["cause"] == "SageMaker.AmazonSageMakerException: Rate exceeded"


def test_a_model_copy_that_cannot_be_deleted_on_a_stop_leaves_the_report_unchanged(bulk):
    bulk.deploy_model()
    bulk.upload(*IMAGES)
    refused = [Throw("SageMaker.AmazonSageMakerException", "Rate exceeded")] * 4
    # The first try and SAGEMAKER_API's 4 retries all refused.
    not_deleted = [Throw("SageMaker.SageMakerException", "Throttled")] * 5

    run = bulk.run({"Transform": refused, "DeleteModelOfStoppedRun": not_deleted})

    assert (run.status, run.error) == ("FAILED", "TransformFailed")
    assert run.attempts("DeleteModelOfStoppedRun") == 5
    ((_, report),) = bulk.notifications()
    assert report["cause"] == "SageMaker.AmazonSageMakerException: Rate exceeded"


def test_a_transform_past_its_timeout_is_stopped_its_outputs_counted_and_its_model_deleted(
    bulk,
):
    # Step Functions stops the job at the task's TimeoutSeconds and fails the task with
    # States.Timeout; what the job wrote by then is counted.
    bulk.deploy_model()
    bulk.upload(*IMAGES)

    run = bulk.run({"Transform": [Throw("States.Timeout", "")]})

    assert run.status == "SUCCEEDED"
    assert [s for s in run.states() if s in TRANSFORMED] == TRANSFORMED
    assert (run.output["counted"], run.output["transform_status"]) == (2, "Failed")
    assert run.output["transform_failure"].startswith("States.Timeout")
    assert models_left(bulk) == [MODEL_NAME]


def test_a_transform_model_that_cannot_be_deleted_does_not_cost_the_run_its_counts(bulk):
    bulk.deploy_model()
    bulk.upload(*IMAGES)
    # The first try and SAGEMAKER_API's 4 retries all refused.
    refused = [Throw("SageMaker.SageMakerException", "Rate exceeded")] * 5

    run = bulk.run({"Transform": [Return(finished_job())], "DeleteTransformModel": refused})

    assert run.attempts("DeleteTransformModel") == 5
    assert (run.status, run.output["counted"]) == ("SUCCEEDED", 2)
    ((subject, _),) = bulk.notifications()
    assert subject == f"{PREFIX}: bulk counting run finished"


def test_an_image_overwritten_while_the_transform_runs_is_reported_not_counted(bulk):
    bulk.deploy_model()
    bulk.upload(*IMAGES)
    answer = json.dumps(ANSWER).encode()

    def overwriting(key: str) -> bytes:
        # A camera uploads a new cam2.png while the job runs: which one it saw is unknown.
        if key.endswith("cam2.png"):
            bulk.s3.put_object(Bucket=BUCKET, Key=key, Body=image_bytes() + b"\0")
        return answer

    bulk.model = overwriting

    run = bulk.run({"Transform": [Return(finished_job())]})

    assert run.status == "SUCCEEDED"
    summary = run.output
    assert (summary["counted"], summary["overwritten"], summary["failed"]) == (1, 1, 0)
    assert summary["outcome"] == "partial"
    assert [event["detail"]["image"] for event in bulk.result_events()] == [
        f"s3://{BUCKET}/{IMAGES[0]}"
    ]


def test_a_second_run_skips_what_the_same_model_counted_and_starts_no_transform(bulk):
    bulk.deploy_model()
    bulk.upload(*IMAGES)
    bulk.run({"Transform": [Return(finished_job())]}, name="first")
    bulk.notifications()

    again = bulk.run({}, name="second")

    assert again.status == "SUCCEEDED"
    assert "NothingToTransform" in again.states()
    assert "Transform" not in again.states()
    assert (again.output["skipped"], again.output["counted"]) == (2, 0)
    assert again.output["transform_status"] == "NotRun"


def test_every_output_garbled_stops_the_run_and_reports_it(bulk):
    bulk.deploy_model()
    bulk.upload(*IMAGES)
    bulk.model = lambda _key: b'{"predictions": "not the documented shape"}'

    run = bulk.run({"Transform": [Return(finished_job())]})

    assert (run.status, run.error) == ("FAILED", "NothingCounted")
    ((subject, report),) = bulk.notifications()
    assert subject == f"{PREFIX}: bulk counting run stopped"
    assert report["outcome"] == "failed"
    assert report["cause"].startswith(
        "2 selected images were not counted (transform job Completed)"
    )


def test_without_a_deployed_model_the_run_is_refused_before_listing(bulk):
    bulk.upload(*IMAGES)
    # AWS names SDK errors "<Service>.<Error>" in PascalCase (Ssm.ParameterNotFoundException);
    # moto's interpreter says "ssm.", so the missing parameter's error is given as AWS's.
    # https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html
    missing = Throw("Ssm.ParameterNotFoundException", f"Parameter {PARAMETER} not found.")

    run = bulk.run({"ReadActiveModel": [missing]})

    assert (run.status, run.error) == ("FAILED", "NoModelDeployed"), run.cause
    assert "SelectImages" not in run.states()
    ((subject, report),) = bulk.notifications()
    assert (subject, report["outcome"]) == (f"{PREFIX}: bulk counting run stopped", "refused")
    assert report["request"] == REQUEST


@pytest.mark.parametrize(
    "request_",
    [
        {"bucket": BUCKET, "prefix": "results/"},
        {"bucket": "someone-elses-bucket", "prefix": "archive/2026/"},
        {"prefix": "archive/2026/"},
    ],
)
def test_a_request_outside_the_counted_prefixes_is_refused(bulk, request_):
    run = bulk.run({}, request=request_)

    assert (run.status, run.error) == ("FAILED", "BadRequest")
    assert run.states() == ["CheckRequest", "RequestRefused", "NotifyStopped", "RunStopped"]
    assert "archive/" in run.cause


def test_the_bulk_definition_differs_from_what_runs_only_in_batching(templates):
    definition = templates.definition(STACK)
    maps = {name: state for name, state in definition["States"].items() if state["Type"] == "Map"}
    adapted = for_interpreter(definition)

    assert set(maps) == {"SelectImages", "CountResults"}
    for name, state in maps.items():
        changed = {k for k in state if state[k] != adapted["States"][name].get(k)}
        assert changed == {"ItemBatcher"}
        assert adapted["States"][name]["ToleratedFailurePercentage"] == float(
            state["ToleratedFailurePercentage"]
        )
        assert (
            adapted["States"][name]["ItemSelector"]["BatchInput"]
            == (state["ItemBatcher"]["BatchInput"])
        )


def test_the_transform_job_times_out_before_the_run_and_its_model_copy_is_isolated(templates):
    states = templates.definition(STACK)["States"]

    # bulk.timeout_hours 48 by default: the job may take 36 hours of them.
    assert states["Transform"]["TimeoutSeconds"] == 36 * 3600
    assert states["CreateTransformModel"]["Parameters"]["EnableNetworkIsolation"] is True
