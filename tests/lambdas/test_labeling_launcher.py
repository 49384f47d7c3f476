"""The labeling launcher: S3 on moto, SageMaker and EventBridge through botocore's Stubber.

moto has no labeling-job API; Stubber checks each request against the service model
(types, required members, lengths, ranges) and answers with a model-checked response.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from counting_core.contracts.environment import MisconfiguredFunction
from counting_core.contracts.labeling_launcher import Environment
from lambdas.labeling_launcher import handler
from lambdas.labeling_launcher.service import LabelingLauncher
from tests.lambdas.conftest import deployed

ACCOUNT = "123456789012"
PREFIX = "object-counting-dev"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/object-counting-dev-ground-truth"
KEY_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
REQUEST_KEY = "labeling/requests/street.json"
IMAGES = "labeling/images/street/"
REQUEST = {
    "batch_name": "street",
    "image_prefix": IMAGES,
    "labels": ["car", "person"],
    "label_attribute": "vehicles",
    "instructions": {"short": "Draw a box around every car and every person."},
}


def bucket_name(region: str) -> str:
    return f"{PREFIX}-data-{ACCOUNT}-{region}"


def workteam_arn(region: str) -> str:
    return f"arn:aws:sagemaker:{region}:{ACCOUNT}:workteam/private-crowd/{PREFIX}-workers"


@pytest.fixture(params=["us-east-1", "eu-west-1"])
def region(request) -> str:
    return request.param


def environment_in(region: str) -> dict[str, str]:
    """The environment the labeling stack gives the function in ``region``."""
    return {
        "BUCKET": bucket_name(region),
        "ROLE_ARN": ROLE_ARN,
        "WORKTEAM_ARN": workteam_arn(region),
        "KMS_KEY_ARN": KEY_ARN,
        "JOB_PREFIX": PREFIX,
        "EVENT_SOURCE": f"{PREFIX}.labeling",
        "WORKERS_PER_OBJECT": "1",
        "TASK_TIME_LIMIT_SECONDS": "300",
        "TASK_AVAILABILITY_SECONDS": "864000",
        "POWERTOOLS_SERVICE_NAME": "labeling-launcher",
        "POWERTOOLS_METRICS_NAMESPACE": "ObjectCounting",
    }


@dataclass(frozen=True)
class Clients:
    """The launcher's clients: S3 on moto; SageMaker and EventBridge for Stubbers."""

    s3: Any
    sagemaker: Any
    events: Any


@pytest.fixture
def clients(aws, region) -> Clients:
    s3 = boto3.client("s3", region_name=region)
    # us-east-1 is S3's default location and takes no location constraint.
    location = {} if region == "us-east-1" else {"LocationConstraint": region}
    s3.create_bucket(
        Bucket=bucket_name(region),
        **({"CreateBucketConfiguration": location} if location else {}),
    )
    s3.put_bucket_versioning(
        Bucket=bucket_name(region), VersioningConfiguration={"Status": "Enabled"}
    )
    return Clients(
        s3=s3,
        sagemaker=boto3.client("sagemaker", region_name=region),
        events=boto3.client("events", region_name=region),
    )


def make_launcher(region: str, clients: Clients) -> LabelingLauncher:
    return LabelingLauncher(
        Environment.model_validate(environment_in(region)),
        s3=clients.s3,
        sagemaker=clients.sagemaker,
        events=clients.events,
    )


@pytest.fixture
def launcher(region, clients) -> LabelingLauncher:
    """The launcher of ``region``'s environment over its clients."""
    return make_launcher(region, clients)


@pytest.fixture
def sagemaker(clients):
    with Stubber(clients.sagemaker) as stub:
        yield stub
        stub.assert_no_pending_responses()


@pytest.fixture
def events(clients):
    with Stubber(clients.events) as stub:
        yield stub
        stub.assert_no_pending_responses()


def s3_client(region: str):
    return boto3.client("s3", region_name=region)


def put_images(region: str, *keys: str) -> None:
    for key in keys:
        s3_client(region).put_object(Bucket=bucket_name(region), Key=key, Body=b"image bytes")


def upload(region: str, key: str, body: bytes) -> dict:
    """Put an object and return the EventBridge event S3 sends for it."""
    put = s3_client(region).put_object(Bucket=bucket_name(region), Key=key, Body=body)
    return {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "region": region,
        "detail": {
            "bucket": {"name": bucket_name(region)},
            "object": {"key": key, "etag": put["ETag"].strip('"'), "version-id": put["VersionId"]},
        },
    }


def read(region: str, key: str) -> str:
    body = s3_client(region).get_object(Bucket=bucket_name(region), Key=key)["Body"]
    return body.read().decode()


def keys_under(region: str, prefix: str) -> list[str]:
    listing = s3_client(region).list_objects_v2(Bucket=bucket_name(region), Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


# A job name: the prefix and the 32 hex digits of a UUID derived from the request's version.
JOB_NAME = rf"{PREFIX}-[0-9a-f]{{32}}"


class Matches:  # noqa: PLW1641 - compared, never hashed
    """Equal to every string that fully matches ``pattern``: a Stubber expected_params value."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.pattern.fullmatch(other) is not None

    def __repr__(self) -> str:
        return f"Matches({self.pattern.pattern!r})"


def create_request(region: str, *, workers: int = 1) -> dict:
    """The CreateLabelingJob request the launcher should send for REQUEST (any job name)."""
    bucket = re.escape(bucket_name(region))
    folder = rf"s3://{bucket}/labeling/input/{JOB_NAME}/"
    accounts = {"us-east-1": "432418664414", "eu-west-1": "568282634449"}
    functions = f"arn:aws:lambda:{region}:{accounts[region]}:function"
    return {
        "LabelingJobName": Matches(JOB_NAME),
        "LabelAttributeName": "vehicles",
        "InputConfig": {
            "DataSource": {"S3DataSource": {"ManifestS3Uri": Matches(rf"{folder}input\.manifest")}}
        },
        "OutputConfig": {
            "S3OutputPath": f"s3://{bucket_name(region)}/labeling/output/street/",
            "KmsKeyId": KEY_ARN,
        },
        "RoleArn": ROLE_ARN,
        "LabelCategoryConfigS3Uri": Matches(rf"{folder}categories\.json"),
        "HumanTaskConfig": {
            "WorkteamArn": workteam_arn(region),
            "UiConfig": {"UiTemplateS3Uri": Matches(rf"{folder}worker-template\.liquid\.html")},
            "PreHumanTaskLambdaArn": f"{functions}:PRE-BoundingBox",
            "TaskKeywords": ["Images", "bounding boxes", "object detection"],
            "TaskTitle": "Draw boxes around objects (street)",
            "TaskDescription": "Draw a box around every car and every person.",
            "NumberOfHumanWorkersPerDataObject": workers,
            "TaskTimeLimitInSeconds": 300,
            "TaskAvailabilityLifetimeInSeconds": 864000,
            "AnnotationConsolidationConfig": {
                "AnnotationConsolidationLambdaArn": f"{functions}:ACS-BoundingBox"
            },
        },
        "Tags": [{"Key": "batch", "Value": "street"}],
    }


def expect_create(stub: Stubber, region: str, *, workers: int = 1) -> None:
    """Answer the next CreateLabelingJob with the ARN of the job it names."""
    arn = f"arn:aws:sagemaker:{region}:{ACCOUNT}:labeling-job/{PREFIX}-{'0' * 32}"
    stub.add_response(
        "create_labeling_job", {"LabelingJobArn": arn}, create_request(region, workers=workers)
    )


def test_a_request_starts_a_bounding_box_job(launcher, sagemaker, region):
    put_images(
        region,
        f"{IMAGES}b.jpg",
        f"{IMAGES}a.PNG",
        f"{IMAGES}night/c.JPEG",
        f"{IMAGES}notes.txt",
        "labeling/images/streets-other/d.jpg",
    )
    event = upload(region, REQUEST_KEY, json.dumps({**REQUEST, "workers_per_object": 3}).encode())
    expect_create(sagemaker, region, workers=3)

    outcome = handler.launch(event, launcher)

    job_name = outcome["labelingJobName"]
    assert re.fullmatch(JOB_NAME, job_name)
    assert outcome == {"status": "started", "request": REQUEST_KEY, "labelingJobName": job_name}
    bucket = bucket_name(region)
    folder = f"labeling/input/{job_name}/"
    assert read(region, f"{folder}input.manifest").splitlines() == [
        f'{{"source-ref":"s3://{bucket}/{IMAGES}a.PNG"}}',
        f'{{"source-ref":"s3://{bucket}/{IMAGES}b.jpg"}}',
        f'{{"source-ref":"s3://{bucket}/{IMAGES}night/c.JPEG"}}',
    ]
    assert json.loads(read(region, f"{folder}categories.json")) == {
        "document-version": "2018-11-28",
        "labels": [{"label": "car"}, {"label": "person"}],
    }
    template = read(region, f"{folder}worker-template.liquid.html")
    assert "<crowd-bounding-box" in template
    assert 'header="Draw a box around every car and every person."' in template


def test_images_are_listed_past_the_first_page(launcher, sagemaker, region, clients, monkeypatch):
    monkeypatch.setattr("lambdas.labeling_launcher.service.LISTING_PAGE_SIZE", 2)
    listings = []
    clients.s3.meta.events.register("before-call.s3.ListObjectsV2", lambda **_: listings.append(1))
    put_images(region, *(f"{IMAGES}{number}.jpg" for number in range(5)))
    event = upload(region, REQUEST_KEY, json.dumps(REQUEST).encode())
    expect_create(sagemaker, region)

    job_name = handler.launch(event, launcher)["labelingJobName"]

    assert len(listings) == 3
    manifest = read(region, f"labeling/input/{job_name}/input.manifest").splitlines()
    assert [json.loads(line)["source-ref"].rsplit("/", 1)[1] for line in manifest] == [
        f"{number}.jpg" for number in range(5)
    ]


def test_the_same_upload_delivered_twice_starts_one_job(launcher, sagemaker, region, clients):
    put_images(region, f"{IMAGES}a.jpg")
    event = upload(region, REQUEST_KEY, json.dumps(REQUEST).encode())
    expect_create(sagemaker, region)
    sagemaker.add_client_error(
        "create_labeling_job",
        service_error_code="ResourceInUse",
        http_status_code=400,
        expected_params=create_request(region),
    )
    names_sent = []
    clients.sagemaker.meta.events.register(
        "before-parameter-build.sagemaker.CreateLabelingJob",
        lambda params, **_: names_sent.append(params["LabelingJobName"]),
    )

    first = handler.launch(event, launcher)
    second = handler.launch(event, launcher)

    # Both deliveries asked for one name; SageMaker refused the second job.
    assert len(names_sent) == 2
    assert names_sent[0] == names_sent[1]
    assert first == {"status": "started", "request": REQUEST_KEY, "labelingJobName": names_sent[0]}
    assert second == {
        "status": "already started",
        "request": REQUEST_KEY,
        "labelingJobName": names_sent[0],
    }


def test_other_sagemaker_errors_are_raised_for_a_retry(launcher, sagemaker, region):
    put_images(region, f"{IMAGES}a.jpg")
    event = upload(region, REQUEST_KEY, json.dumps(REQUEST).encode())
    sagemaker.add_client_error(
        "create_labeling_job",
        service_error_code="ThrottlingException",
        expected_params=create_request(region),
    )

    with pytest.raises(ClientError) as raised:
        handler.launch(event, launcher)

    assert raised.value.response["Error"]["Code"] == "ThrottlingException"
    assert keys_under(region, "labeling/requests/") == [REQUEST_KEY]  # no rejection written
    # The retry writes them again; meanwhile no job uses them.
    assert keys_under(region, "labeling/input/") == []


def test_a_request_sagemaker_refuses_is_rejected_and_leaves_no_inputs(launcher, sagemaker, region):
    put_images(region, f"{IMAGES}a.jpg")
    event = upload(region, REQUEST_KEY, json.dumps(REQUEST).encode())
    sagemaker.add_client_error(
        "create_labeling_job",
        service_error_code="ValidationException",
        service_message="The workteam is not in this Region.",
        http_status_code=400,
        expected_params=create_request(region),
    )

    outcome = handler.launch(event, launcher)

    assert outcome["status"] == "rejected"
    rejection = json.loads(read(region, "labeling/requests/street.rejected.json"))
    assert rejection["reason"] == (
        "CreateLabelingJob refused the request: The workteam is not in this Region."
    )
    assert keys_under(region, "labeling/input/") == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            {**REQUEST, "labels": [f"class{i}" for i in range(11)]},
            "labels: List should have at most 10",
        ),
        ({**REQUEST, "colour": "red"}, "colour: unknown key"),
        ({**REQUEST, "label_attribute": "vehicles-ref"}, "must not end in '-ref'"),
        ({**REQUEST, "image_prefix": "labeling/images/empty/"}, "no JPEG or PNG images"),
        ("not json", "the request is not valid JSON: expected ident at line 1 column 2"),
        (
            '{"batch_name": ' + "[" * 10_000 + "]" * 10_000 + "}",
            "the request has JSON nested more than 32 levels deep",
        ),
        (
            json.dumps(REQUEST)[:-1] + ', "workers_per_object": ' + "9" * 5000 + "}",
            "the request has a number of 5,000 characters",
        ),
        (
            json.dumps({**REQUEST, "labels": ["car", "\ud800"]}),
            "the request is not valid JSON: a \\u escape that is half of a character",
        ),
        (json.dumps([REQUEST]), "the request is a JSON array of 1 item(s); a request is one"),
        (
            json.dumps(REQUEST) + "\n" + json.dumps(REQUEST),
            "the request has more than one JSON value: another one starts at line 2 column 1",
        ),
        (
            json.dumps(REQUEST)[:50],
            "the request ends at line 1 column 50 before its JSON is complete",
        ),
        (
            json.dumps({**REQUEST, "instructions": {"short": "Boxes", "full": "x" * 70_000}}),
            "a request has at most 65,536",
        ),
        # CreateLabelingJob's TaskDescription is ".+": one line. Refused here, not retried.
        (
            {**REQUEST, "instructions": {"short": "Box every car.\nAnd every person."}},
            "instructions.short: must be one line",
        ),
    ],
)
def test_a_bad_request_is_rejected_beside_it_and_starts_nothing(
    launcher, sagemaker, region, body, reason
):
    put_images(region, f"{IMAGES}a.jpg", "labeling/images/empty/readme.txt")
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    event = upload(region, REQUEST_KEY, data)

    outcome = handler.launch(event, launcher)

    # The Stubber holds no responses: any SageMaker call would have failed this test.
    assert outcome["status"] == "rejected"
    rejection = json.loads(read(region, "labeling/requests/street.rejected.json"))
    assert rejection["request"] == REQUEST_KEY
    assert reason in rejection["reason"]
    assert "\n" not in rejection["reason"]
    assert rejection["time"].endswith("+00:00")
    assert keys_under(region, "labeling/input/") == []


def test_an_empty_prefix_names_the_prefix(launcher, sagemaker, region):
    event = upload(region, REQUEST_KEY, json.dumps(REQUEST).encode())

    handler.launch(event, launcher)

    rejection = json.loads(read(region, "labeling/requests/street.rejected.json"))
    assert rejection["reason"] == (
        f"s3://{bucket_name(region)}/{IMAGES}: no JPEG or PNG images (.jpg, .jpeg, .png) to label"
    )


def test_a_region_without_ground_truth_rejects_the_request(region, clients):
    put_images(region, f"{IMAGES}a.jpg")
    # Its jobs start in its SageMaker client's Region: one without Ground Truth's functions.
    elsewhere = Clients(
        s3=clients.s3,
        sagemaker=boto3.client("sagemaker", region_name="sa-east-1"),
        events=clients.events,
    )
    event = upload(region, REQUEST_KEY, json.dumps(REQUEST).encode())

    with Stubber(elsewhere.sagemaker):  # no responses: any SageMaker call fails the test
        outcome = handler.launch(event, make_launcher(region, elsewhere))

    assert outcome["status"] == "rejected"
    rejection = json.loads(read(region, "labeling/requests/street.rejected.json"))
    assert (
        rejection["reason"]
        == "Ground Truth bounding-box jobs are not available in region sa-east-1"
    )


@pytest.mark.parametrize(
    "key", ["labeling/requests/street.rejected.json", "labeling/requests/a.txt"]
)
def test_rejections_and_other_files_start_nothing(launcher, sagemaker, region, key):
    event = upload(region, key, b"{}")

    assert handler.launch(event, launcher) == {"status": "ignored", "request": key}
    assert keys_under(region, "labeling/requests/") == [key]


def announcement(job_name: str, manifest: str) -> dict:
    """The PutEvents request announcing a completed job (the training start's contract)."""
    detail = {"labelingJobName": job_name, "manifestUri": manifest, "labelAttribute": "vehicles"}
    entry = {
        "Source": f"{PREFIX}.labeling",
        "DetailType": "Labeling Job Completed",
        "Detail": json.dumps(detail),
    }
    return {"Entries": [entry]}


def test_a_completed_job_is_announced_for_training(launcher, sagemaker, events, region):
    job_name = f"{PREFIX}-0123456789abcdef"
    arn = f"arn:aws:sagemaker:{region}:{ACCOUNT}:labeling-job/{job_name}"
    manifest = f"s3://{bucket_name(region)}/labeling/output/street/{job_name}/manifests/output/output.manifest"
    sagemaker.add_response(
        "describe_labeling_job",
        describe_response(region, job_name, manifest),
        {"LabelingJobName": job_name},
    )
    events.add_response(
        "put_events",
        {"FailedEntryCount": 0, "Entries": [{"EventId": "1"}]},
        announcement(job_name, manifest),
    )

    outcome = handler.launch(state_change(region, arn), launcher)

    assert outcome == {"status": "announced", "labelingJobName": job_name, "manifestUri": manifest}


def test_a_refused_announcement_is_raised_for_a_retry(launcher, sagemaker, events, region):
    job_name = f"{PREFIX}-0123456789abcdef"
    arn = f"arn:aws:sagemaker:{region}:{ACCOUNT}:labeling-job/{job_name}"
    manifest = "s3://b/o.manifest"
    sagemaker.add_response(
        "describe_labeling_job",
        describe_response(region, job_name, manifest),
        {"LabelingJobName": job_name},
    )
    events.add_response(
        "put_events",
        {
            "FailedEntryCount": 1,
            "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}],
        },
        announcement(job_name, manifest),
    )

    with pytest.raises(RuntimeError, match="InternalFailure: try again"):
        handler.launch(state_change(region, arn), launcher)


def state_change(region: str, arn: str) -> dict:
    return {
        "version": "0",
        "detail-type": "SageMaker Ground Truth Labeling Job State Change",
        "source": "aws.sagemaker",
        "account": ACCOUNT,
        "region": region,
        "resources": [arn],
        "detail": {"LabelingJobStatus": "Completed"},
    }


def describe_response(region: str, job_name: str, manifest: str) -> dict:
    bucket = bucket_name(region)
    return {
        "LabelingJobStatus": "Completed",
        "LabelCounters": {"TotalLabeled": 3},
        "CreationTime": "2026-11-26T10:00:00Z",
        "LastModifiedTime": "2026-11-26T12:00:00Z",
        "JobReferenceCode": "abc",
        "LabelingJobName": job_name,
        "LabelingJobArn": f"arn:aws:sagemaker:{region}:{ACCOUNT}:labeling-job/{job_name}",
        "LabelAttributeName": "vehicles",
        "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": f"s3://{bucket}/m"}}},
        "OutputConfig": {"S3OutputPath": f"s3://{bucket}/labeling/output/street/"},
        "RoleArn": ROLE_ARN,
        "HumanTaskConfig": {
            "WorkteamArn": workteam_arn(region),
            "UiConfig": {"UiTemplateS3Uri": f"s3://{bucket}/t"},
            "TaskTitle": "t",
            "TaskDescription": "d",
            "NumberOfHumanWorkersPerDataObject": 1,
            "TaskTimeLimitInSeconds": 300,
        },
        "LabelingJobOutput": {"OutputDatasetS3Uri": manifest},
    }


@pytest.fixture
def configured(aws, monkeypatch, region):
    """The function as Lambda runs it in ``region``, in the environment its stack gives it
    (Lambda sets the Region)."""
    environment = {**environment_in(region), "AWS_DEFAULT_REGION": region}
    with deployed(monkeypatch, environment, handler.launcher):
        yield


def test_the_function_reads_its_environment_on_its_first_invocation(
    configured, clients, region, lambda_context
):
    key = "labeling/requests/notes.txt"
    event = upload(region, key, b"{}")

    assert handler.main(event, lambda_context) == {"status": "ignored", "request": key}


def test_a_function_with_a_malformed_workteam_says_so_in_one_line(
    configured, monkeypatch, lambda_context
):
    monkeypatch.setenv("WORKTEAM_ARN", "private-crowd")

    with pytest.raises(MisconfiguredFunction) as raised:
        handler.main({}, lambda_context)

    message = str(raised.value)
    assert message.startswith(
        "counting_core.contracts.labeling_launcher: WORKTEAM_ARN: String should match pattern"
    )
    assert message.endswith("(got 'private-crowd')")
    assert "\n" not in message
