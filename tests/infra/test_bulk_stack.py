"""The bulk-counting stack, and the result events' permissions and schemas."""

from __future__ import annotations

import json
from pathlib import Path

import botocore.session
import pytest
from aws_cdk.assertions import Match, Template
from botocore.validate import ParamValidator

from stacks.config import BulkSettings, ConfigError, load_config
from tests.conftest import cdk_context
from tests.infra.synth import build_app
from tests.stepfunctions.template import ACCOUNT, REGION, Templates

pytestmark = pytest.mark.synth  # every test here builds the CDK app

PREFIX = "object-counting-dev"
STACK = f"{PREFIX}-bulk-counting"
BUCKET = f"{PREFIX}-data-{ACCOUNT}-{REGION}"
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
DEFAULT_BUS = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"
ANNOUNCE = {
    "StringEquals": {
        "events:source": f"{PREFIX}.counting",
        "events:detail-type": ["Image Counted", "Image Rejected"],
    }
}


@pytest.fixture(scope="module")
def synthesized() -> tuple[dict, Templates]:
    app, stacks = build_app(rule_packs=False)
    assembly = app.synth()
    templates = Templates(
        {s.stack_name: json.loads(Path(s.template_full_path).read_text()) for s in assembly.stacks}
    )
    return stacks, templates


@pytest.fixture(scope="module")
def template(synthesized) -> Template:
    return Template.from_stack(synthesized[0]["bulk"])


@pytest.fixture(scope="module")
def states(synthesized) -> dict:
    return synthesized[1].definition(STACK)["States"]


def resolved(synthesized, stack: str, node):
    return synthesized[1].resolve(stack, node)


def all_statements(synthesized, stack: str) -> list[dict]:
    templates = synthesized[1]
    return [
        statement
        for body in templates.resources(stack, "AWS::IAM::Policy").values()
        for statement in resolved(synthesized, stack, body["Properties"]["PolicyDocument"])[
            "Statement"
        ]
    ]


def test_the_state_machine_is_named_after_the_stage(template):
    template.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {"StateMachineName": STACK, "TracingConfiguration": {"Enabled": True}},
    )


@pytest.mark.parametrize(
    ("name", "listing"), [("SelectImages", "$.prefix"), ("CountResults", None)]
)
def test_both_maps_read_s3_in_batches_with_bounded_concurrency_and_tolerance(states, name, listing):
    settings = BulkSettings()
    state = states[name]

    assert state["Type"] == "Map"
    assert state["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "STANDARD",
    }
    reader = state["ItemReader"]
    assert reader["Resource"] == "arn:aws:states:::s3:listObjectsV2"
    assert reader["Parameters"]["Bucket"] == BUCKET
    if listing:
        assert reader["Parameters"]["Prefix.$"] == listing
    else:
        assert reader["Parameters"]["Prefix.$"] == "States.Format('bulk/{}/outputs/', $.run)"
    assert state["ItemBatcher"] == {
        "MaxItemsPerBatch": settings.batch_size,
        "BatchInput": {"run.$": "$.run", "model.$": "$.active.record"},
    }
    assert state["MaxConcurrency"] == settings.max_concurrency == 100
    assert state["ToleratedFailurePercentage"] == settings.tolerated_failure_percentage == 5
    assert state["ResultWriter"] == {
        "Resource": "arn:aws:states:::s3:putObject",
        "Parameters": {"Bucket": BUCKET, "Prefix": "bulk/map-runs/"},
    }
    (batch,) = state["ItemProcessor"]["States"].values()
    assert batch["Parameters"]["items.$"] == "$.Items"


def test_the_transform_job_runs_the_active_model_on_each_image_encrypted(synthesized, states):
    storage = f"{PREFIX}-storage"
    (key,) = synthesized[1].resources(storage, "AWS::KMS::Key")
    key_arn = synthesized[1].resolve(storage, {"Fn::GetAtt": [key, "Arn"]})
    transform = states["Transform"]

    assert transform["Resource"] == "arn:aws:states:::sagemaker:createTransformJob.sync"
    job = transform["Parameters"]
    assert (job["TransformJobName.$"], job["ModelName.$"]) == ("$.run", "$.run")
    assert job["TransformInput"] == {
        "DataSource": {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri.$": "$.manifest.uri"}},
        "ContentType": "application/x-image",
        "SplitType": "None",
        "CompressionType": "None",
    }
    assert job["TransformOutput"] == {
        "S3OutputPath.$": f"States.Format('s3://{BUCKET}/bulk/{{}}/outputs/', $.run)",
        "Accept": "application/json",
        "AssembleWith": "None",
        "KmsKeyId": key_arn,
    }
    assert job["TransformResources"] == {
        "InstanceType": "ml.m5.xlarge",
        "InstanceCount": 1,
        "VolumeKmsKeyId": key_arn,
    }
    assert (job["BatchStrategy"], job["MaxPayloadInMB"]) == ("SingleRecord", 20)
    assert "MaxConcurrentTransforms" not in job
    # A job that failed on some images, or ran past its timeout, goes on to count the
    # others' outputs, deleting the run's model copy first, as a job that completed does.
    # States.TaskFailed matches every error but a timeout: the job's start failing is
    # caught first, and stops the run, the copy deleted on the way to the report.
    not_started, partial, anything_else = transform["Catch"]
    assert not_started == {
        "ErrorEquals": [
            "SageMaker.AmazonSageMakerException",
            "SageMaker.ResourceLimitExceededException",
        ],
        "ResultPath": "$.failure",
        "Next": "DeleteModelOfStoppedRun",
    }
    assert partial == {
        "ErrorEquals": ["States.TaskFailed", "States.Timeout"],
        "ResultPath": "$.transform",
        "Next": "DeleteTransformModel",
    }
    assert anything_else == {
        "ErrorEquals": ["States.ALL"],
        "ResultPath": "$.failure",
        "Next": "DeleteModelOfStoppedRun",
    }
    on_the_way = states["DeleteModelOfStoppedRun"]
    assert on_the_way["Parameters"] == {"ModelName.$": "$.run"}
    assert on_the_way["Next"] == "TransformFailed"
    assert on_the_way["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": "TransformFailed"}
    ]
    assert transform["Next"] == "DeleteTransformModel"
    delete = states["DeleteTransformModel"]
    assert delete["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:deleteModel"
    assert delete["Parameters"] == {"ModelName.$": "$.run"}
    # Whether or not the copy could be deleted, the outputs are counted.
    assert delete["Next"] == "CountResults"
    assert delete["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": "CountResults"}
    ]


def test_the_transform_request_fits_botocores_model(states):
    """What the definition fixes (names and paths filled in) is a valid CreateTransformJob."""
    job = dict(states["Transform"]["Parameters"])
    job.pop("TransformJobName.$")
    job.pop("ModelName.$")
    job["TransformJobName"] = job["ModelName"] = f"{PREFIX}-bulk-1a2b3c4d"
    job["TransformInput"]["DataSource"]["S3DataSource"] = {
        "S3DataType": "ManifestFile",
        "S3Uri": f"s3://{BUCKET}/bulk/run/transform.manifest",
    }
    job["TransformOutput"] = {
        **{k: v for k, v in job["TransformOutput"].items() if not k.endswith(".$")},
        "S3OutputPath": f"s3://{BUCKET}/bulk/run/outputs/",
    }
    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("CreateTransformJob").input_shape
    report = ParamValidator().validate(job, shape)
    assert not report.has_errors(), report.generate_report()
    instance_types = model.shape_for("TransformInstanceType").enum
    assert BulkSettings().instance_type in instance_types


def test_an_instance_with_nvme_storage_gets_no_volume_key():
    # ml.g5 keeps the job's data on hardware-encrypted NVMe: CreateTransformJob refuses a
    # VolumeKmsKeyId there, and the role needs no grant for one.
    app, _ = build_app(rule_packs=False, **{"counting.bulk.instance_type": "ml.g5.xlarge"})
    assembly = app.synth()
    templates = Templates(
        {s.stack_name: json.loads(Path(s.template_full_path).read_text()) for s in assembly.stacks}
    )
    resources = templates.definition(STACK)["States"]["Transform"]["Parameters"][
        "TransformResources"
    ]
    key_actions = [
        statement["Action"]
        for body in templates.resources(STACK, "AWS::IAM::Policy").values()
        for statement in templates.resolve(STACK, body["Properties"]["PolicyDocument"])["Statement"]
        if statement.get("Sid") == "UseTheDataKey"
    ]

    assert resources == {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1}
    # The transform role's and the bulk function's: neither may create grants.
    assert key_actions == [["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]] * 2


def test_the_runs_model_copy_takes_images_as_large_as_the_run_allows(states):
    # bulk.max_payload_mb (20 by default): 20 * 1024 * 1024 bytes for TorchServe, whose own
    # limit (6,553,500 bytes) would fail the job on the first large photo.
    container = states["CreateTransformModel"]["Parameters"]["PrimaryContainer"]

    assert container["Environment"] == {
        "TS_MAX_REQUEST_SIZE": "20971520",
        "TS_MAX_RESPONSE_SIZE": "20971520",
        "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
    }


def test_the_transform_role_reads_only_the_counted_prefixes_and_writes_only_bulk(synthesized):
    statements = {
        s.get("Sid"): s
        for s in all_statements(synthesized, STACK)
        if s.get("Sid") in {"ReadModelArtifacts", "ReadManifestsWriteOutputs"}
    }
    transform_reads = [
        s for s in all_statements(synthesized, STACK) if s.get("Sid") == "ReadImagesToCount"
    ]

    assert statements["ReadManifestsWriteOutputs"]["Resource"] == f"arn:aws:s3:::{BUCKET}/bulk/*"
    assert statements["ReadModelArtifacts"]["Resource"] == (
        f"arn:aws:s3:::{BUCKET}/training/models/*"
    )
    for statement in transform_reads:
        assert statement["Action"] == "s3:GetObject"
        assert statement["Resource"] == f"arn:aws:s3:::{BUCKET}/archive/*"


def test_the_state_machine_may_run_its_own_children_and_its_jobs(synthesized):
    statements = all_statements(synthesized, STACK)
    machine = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:"
    starts = [s for s in statements if s.get("Action") == "states:StartExecution"]
    jobs = [s for s in statements if s.get("Sid") == "RunTransformJobs"]
    passes = [s for s in statements if s.get("Sid") == "PassTheTransformRole"]

    (start,) = starts
    assert start["Resource"].startswith(machine)
    (job,) = jobs
    assert job["Resource"] == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:transform-job/{PREFIX}-*"
    (passing,) = passes
    assert passing["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    listing = [s for s in statements if s.get("Action") == "s3:ListBucket"]
    assert listing
    assert all(s["Resource"] == f"arn:aws:s3:::{BUCKET}" for s in listing)


def test_listing_is_limited_to_the_prefixes_a_run_may_list(synthesized):
    # The select map lists a source prefix (bulk.source_prefixes: archive/ by default), the
    # count map the run's transform outputs under bulk/; nothing else, and never unconditioned.
    prefixes = [
        # A single value is written as it is, several as a list.
        [*statement["Condition"]["StringLike"]["s3:prefix"]]
        if isinstance(statement["Condition"]["StringLike"]["s3:prefix"], list)
        else [statement["Condition"]["StringLike"]["s3:prefix"]]
        for statement in all_statements(synthesized, STACK)
        if statement.get("Action") == "s3:ListBucket" and "Condition" in statement
    ]
    unconditioned = [
        statement
        for statement in all_statements(synthesized, STACK)
        if statement.get("Action") == "s3:ListBucket" and "Condition" not in statement
    ]

    assert unconditioned == []
    # The function's own listing of run files, then the two maps'.
    assert sorted(prefixes) == [["archive/*"], ["bulk/*"], ["bulk/*"]]


def test_both_pipelines_may_announce_results_only_on_the_default_bus_as_their_source(
    synthesized,
):
    for stack in (f"{PREFIX}-counting", STACK):
        (announce,) = [
            s for s in all_statements(synthesized, stack) if s.get("Sid") == "AnnounceResults"
        ]
        assert announce["Action"] == "events:PutEvents"
        assert announce["Resource"] == DEFAULT_BUS
        assert announce["Condition"] == ANNOUNCE


def test_the_schema_registry_holds_the_checked_in_schemas(synthesized):
    counting = Template.from_stack(synthesized[0]["counting"])
    counting.has_resource_properties(
        "AWS::EventSchemas::Registry", {"RegistryName": f"{PREFIX}-counting"}
    )
    schemas = counting.find_resources("AWS::EventSchemas::Schema")
    registered = {
        body["Properties"]["SchemaName"]: json.loads(body["Properties"]["Content"])
        for body in schemas.values()
    }

    assert all(body["Properties"]["Type"] == "JSONSchemaDraft4" for body in schemas.values())
    checked_in = {
        name: json.loads((SCHEMAS / file_name).read_text())
        for name, file_name in (
            ("ImageCounted", "image-counted-event.json"),
            ("ImageRejected", "image-rejected-event.json"),
            ("ResultDocument", "result-document.json"),
            ("ResultTableItem", "result-table-item.json"),
        )
    }
    assert registered == {f"{PREFIX}.counting@{name}": body for name, body in checked_in.items()}
    counting.has_resource_properties(
        "AWS::EventSchemas::Schema",
        {
            "RegistryName": {
                "Fn::GetAtt": [Match.string_like_regexp("ResultContracts"), "RegistryName"]
            }
        },
    )


def test_stops_and_the_finish_go_to_the_alerts_topic(states):
    assert states["NotifyStopped"]["Parameters"]["Subject"] == (
        f"{PREFIX}: bulk counting run stopped"
    )
    assert states["NotifyFinished"]["Parameters"]["Subject"] == (
        f"{PREFIX}: bulk counting run finished"
    )
    assert (
        states["NotifyFinished"]["Parameters"]["TopicArn"]
        == states["NotifyStopped"]["Parameters"]["TopicArn"]
    )


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("source_prefixes", '["results/"]', "results/ hold the app's own outputs"),
        ("source_prefixes", '["archive"]', "is not an S3 key prefix ending in /"),
        ("instance_type", "m5.xlarge", "is not an instance type Batch Transform offers"),
        ("tolerated_failure_percentage", "101", "less than or equal to 100"),
    ],
)
def test_bad_bulk_settings_fail_with_the_field_named(setting, value, message):
    with pytest.raises(ConfigError, match=rf"bulk\.{setting}.*{message}"):
        load_config(cdk_context(**{f"counting.bulk.{setting}": value}))


def test_every_ended_run_reaches_the_cleanup_which_may_delete_only_run_copies(synthesized):
    templates = synthesized[1]
    (rule,) = [
        body["Properties"]
        for body in templates.resources(STACK, "AWS::Events::Rule").values()
        if body["Properties"].get("EventPattern", {}).get("source") == ["aws.states"]
    ]
    (machine,) = templates.resources(STACK, "AWS::StepFunctions::StateMachine")
    assert rule["EventPattern"] == {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {
            # The bulk-counting state machine's own ARN: not its map runs' child executions.
            "stateMachineArn": [{"Ref": machine}],
            # Every way an execution ends; a stopped or timed-out run runs no state of its own.
            "status": ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"],
        },
    }
    (target,) = rule["Targets"]
    assert "DeadLetterConfig" in target
    statements = {s.get("Sid"): s for s in all_statements(synthesized, STACK)}
    assert statements["ReadRunHistories"]["Action"] == "states:GetExecutionHistory"
    assert statements["ReadRunHistories"]["Resource"] == (
        f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{STACK}:*"
    )
    assert statements["DeleteRunModels"]["Action"] == "sagemaker:DeleteModel"
    # "<prefix>-bulk-" and a run id: never this stage's deployed models ("<prefix>-<time>-…").
    assert statements["DeleteRunModels"]["Resource"] == (
        f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/{PREFIX}-bulk-*"
    )
    assert statements["ListModels"]["Action"] == "sagemaker:ListModels"


def test_the_run_name_is_what_the_cleanup_deletes(states):
    from counting_core.contracts.bulk_cleanup import RUN_FIELD, run_name_prefix

    name_run = states["NameRun"]["Parameters"][f"{RUN_FIELD}.$"]
    assert name_run.startswith(f"States.Format('{{}}{{}}', '{run_name_prefix(PREFIX)}', ")
