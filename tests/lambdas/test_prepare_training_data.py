"""The Prepare Lambda against moto's S3: what it writes, what it returns, what it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from counting_core.contracts.environment import MisconfiguredFunction
from counting_core.contracts.prepare_training_data import Environment, PreparedRun
from counting_core.models.training import DataNotTrainable
from lambdas.prepare_training_data import handler
from lambdas.prepare_training_data.service import TrainingDataPreparer
from tests.lambdas.conftest import ACCOUNT, REGION, deployed

PREFIX = "object-counting-dev"
BUCKET = f"{PREFIX}-data-{ACCOUNT}-{REGION}"
EXECUTION = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{PREFIX}-training:run-1"
STARTED = "2026-11-26T17:30:00.123Z"
KEY = "training/requests/vehicles.manifest"
DATA = Path(__file__).parents[1] / "data"
# The hand-checked manifest (5 labeled, 2 failed, 1 empty), its images in the data bucket.
HAND_CHECKED = (
    (DATA / "hand_checked.manifest")
    .read_text()
    .replace("s3://counting-data/images/", f"s3://{BUCKET}/labeling/images/street/")
)


# The environment the training stack gives the function.
ENVIRONMENT = {
    "BUCKET": BUCKET,
    "NAME_PREFIX": PREFIX,
    "VALIDATION_FRACTION": "0.2",
    "SPLIT_SEED": "42",
    # The built-in algorithm's Prepare; the torchvision detector's keeps them (test below).
    "KEEP_IMAGES_WITHOUT_BOXES": "false",
    "POWERTOOLS_SERVICE_NAME": "prepare-training-data",
    "POWERTOOLS_METRICS_NAMESPACE": "ObjectCounting",
}


@pytest.fixture
def preparer(aws) -> TrainingDataPreparer:
    """The preparer of that environment over moto's S3, its bucket created."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    return TrainingDataPreparer(Environment.model_validate(ENVIRONMENT), s3=s3)


def upload(text: str, key: str = KEY) -> str:
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key=key, Body=text.encode())
    return f"s3://{BUCKET}/{key}"


def read(key: str) -> str:
    s3 = boto3.client("s3", region_name=REGION)
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()


def event(manifest_uri: str, **request) -> dict:
    """What the Prepare state sends."""
    return {
        "request": {"manifestUri": manifest_uri, **request},
        "executionId": EXECUTION,
        "startedAt": STARTED,
    }


def test_writes_the_split_and_the_report_and_returns_the_run(preparer):
    result = handler.prepare(event(upload(HAND_CHECKED)), preparer)

    run = PreparedRun.model_validate(result)
    assert run.run_name.startswith(f"{PREFIX}-20261126-173000-")
    folder = f"training/manifests/{run.run_name}/"
    assert run.train_manifest_uri == f"s3://{BUCKET}/{folder}train.manifest"
    assert run.validation_manifest_uri == f"s3://{BUCKET}/{folder}validation.manifest"
    assert run.attribute_names == ("source-ref", "vehicles")
    assert run.class_map == {"0": "car", "1": "truck"}
    assert run.hyperparameters == {
        "num_classes": "2",
        "num_training_samples": "4",
        "label_width": "350",
    }
    assert run.figures["dropped_failed"] == 2
    assert run.figures["dropped_empty"] == 1
    train = read(f"{folder}train.manifest").splitlines()
    validation = read(f"{folder}validation.manifest").splitlines()
    assert (len(train), len(validation)) == (4, 1)
    # Every kept line is an original labeled line, unchanged in content.
    originals = {
        json.loads(line)["source-ref"]: json.loads(line) for line in HAND_CHECKED.splitlines()
    }
    for line in train + validation:
        assert json.loads(line) == originals[json.loads(line)["source-ref"]]
    # The validation images as Batch Transform reads them, relative to labeling/images/.
    assert run.validation_images_uri == f"s3://{BUCKET}/{folder}validation-images.manifest"
    (image,) = [json.loads(line)["source-ref"] for line in validation]
    assert json.loads(read(f"{folder}validation-images.manifest")) == [
        {"prefix": f"s3://{BUCKET}/labeling/images/"},
        image.removeprefix(f"s3://{BUCKET}/labeling/images/"),
    ]
    # Every image of the run, train then validation: the torchvision job's images channel.
    assert run.images_uri == f"s3://{BUCKET}/{folder}images.manifest"
    listed = json.loads(read(f"{folder}images.manifest"))
    assert listed[0] == {"prefix": f"s3://{BUCKET}/labeling/images/"}
    assert listed[1:] == [
        json.loads(line)["source-ref"].removeprefix(f"s3://{BUCKET}/labeling/images/")
        for line in train + validation
    ]
    assert len(listed[1:]) == 5  # 4 train + 1 validation: failed and empty items dropped
    report = json.loads(read(f"{folder}data-report.json"))
    assert report["run"] == run.run_name
    assert report["manifest"] == f"s3://{BUCKET}/{KEY}"
    assert (report["images"], report["labeled"], report["failed"], report["empty"]) == (8, 5, 2, 1)


def test_for_the_torchvision_detector_images_without_boxes_reach_the_channels(aws):
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    environment = Environment.model_validate({**ENVIRONMENT, "KEEP_IMAGES_WITHOUT_BOXES": "true"})

    result = handler.prepare(event(upload(HAND_CHECKED)), TrainingDataPreparer(environment, s3=s3))

    run = PreparedRun.model_validate(result)
    # 5 labeled images and d.jpg without boxes: 6, round(6 * 0.2) = 1 validation, 5 train.
    assert (run.figures["dropped_empty"], run.figures["kept_empty"]) == (0, 1)
    assert run.figures["num_training_samples"] == 5
    listed = json.loads(read(f"training/manifests/{run.run_name}/images.manifest"))[1:]
    assert sorted(name.rsplit("/", 1)[1] for name in listed) == [
        "a.jpg", "b.jpg", "d.jpg", "e.jpg", "g.jpg", "h.jpg",
    ]  # fmt: skip


def test_the_same_execution_always_gets_the_same_run(preparer):
    uri = upload(HAND_CHECKED)

    first = handler.prepare(event(uri), preparer)
    again = handler.prepare(event(uri), preparer)

    assert first == again


def test_a_labeling_jobs_output_with_its_attribute(preparer):
    uri = upload(HAND_CHECKED, "labeling/output/job-1/manifests/output/output.manifest")

    result = handler.prepare(
        event(uri, labelingJobName="job-1", labelAttribute="vehicles"), preparer
    )

    folder = f"training/manifests/{result['runName']}/"
    assert json.loads(read(f"{folder}data-report.json"))["labeling_job"] == "job-1"


@pytest.mark.parametrize(
    ("manifest_uri", "reason"),
    [
        (f"s3://{BUCKET}/incoming/x.manifest", "is not an object under"),
        ("s3://another-bucket/training/requests/x.manifest", "is not an object under"),
        (f"s3://{BUCKET}/training/requests/missing.manifest", "no such object"),
    ],
    ids=["outside the allowed prefixes", "another bucket", "missing"],
)
def test_a_manifest_it_may_not_or_cannot_read(preparer, manifest_uri, reason):
    with pytest.raises(DataNotTrainable, match=reason):
        handler.prepare(event(manifest_uri), preparer)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (HAND_CHECKED.replace('"class_id":1', '"class_id":7', 1), "class_id 7 is not in the"),
        ('{"source-ref": "s3://x/y.jpg"\n', "line 1: the line ends at column 29 before its JSON"),
        (HAND_CHECKED.split("\n")[0] + "\n", "cannot fill both a training and a validation"),
        (
            HAND_CHECKED.replace(f"s3://{BUCKET}/labeling/images/", f"s3://{BUCKET}/incoming/"),
            "training reads images only there",
        ),
        (
            HAND_CHECKED.replace('"1":"truck"', '"' + "1" * 5000 + '":"truck"', 1),
            "line 1: class-map key '1111111111111111111[.][.][.] [(]5,002 characters[)] is not",
        ),
        (
            HAND_CHECKED.replace('"1":"truck"', '"10000000":"truck"', 1),
            "line 1: class-map key '10000000' is outside the class ids 0..999",
        ),
        (
            (DATA / "ground_truth" / "conflicting_batches.manifest")
            .read_text()
            .replace("s3://counting-data/", f"s3://{BUCKET}/"),
            "lines 1 and 3 label the same image",
        ),
    ],
    ids=[
        "class id out of range",
        "broken JSON",
        "too few images",
        "images elsewhere",
        "5,000-digit class id",
        "class id of 10,000,000",
        "one image labeled two ways",
    ],
)
def test_data_that_cannot_train_is_refused_with_the_reason(preparer, text, reason):
    with pytest.raises(DataNotTrainable, match=reason):
        handler.prepare(event(upload(text)), preparer)


def test_an_image_listed_twice_reaches_one_channel_and_the_report(preparer):
    merged = (DATA / "ground_truth" / "merged_batches.manifest").read_text()
    uri = upload(merged.replace("s3://counting-data/", f"s3://{BUCKET}/"))

    run = PreparedRun.model_validate(handler.prepare(event(uri), preparer))

    folder = f"training/manifests/{run.run_name}/"
    channels = [
        [json.loads(line)["source-ref"] for line in read(f"{folder}{name}").splitlines()]
        for name in ("train.manifest", "validation.manifest")
    ]
    assert sorted(channels[0] + channels[1]) == [
        f"s3://{BUCKET}/labeling/images/street/{name}" for name in ("a.jpg", "b.jpg", "d.jpg")
    ]
    report = json.loads(read(f"{folder}data-report.json"))
    assert (report["lines"], report["images"], report["duplicates"]) == (6, 4, 2)


def test_undecodable_bytes_are_refused(preparer):
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key=KEY, Body=b"\xff\xfe")

    with pytest.raises(DataNotTrainable, match="not UTF-8"):
        handler.prepare(event(f"s3://{BUCKET}/{KEY}"), preparer)


def test_an_input_without_a_manifest_is_refused(preparer):
    with pytest.raises(DataNotTrainable, match=r"request\.manifestUri"):
        handler.prepare({"request": {}, "executionId": EXECUTION, "startedAt": STARTED}, preparer)


@pytest.fixture
def configured(aws, monkeypatch):
    """The function as Lambda runs it, in the environment its stack gives it."""
    with deployed(monkeypatch, ENVIRONMENT, handler.preparer):
        yield


def test_the_function_reads_its_environment_on_its_first_invocation(configured, lambda_context):
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)

    result = handler.main(event(upload(HAND_CHECKED)), lambda_context)

    # NAME_PREFIX and the execution's start (STARTED) name the run.
    assert result["runName"].startswith(f"{PREFIX}-20261126-173000-")


def test_a_validation_fraction_of_one_says_so_in_one_line(configured, monkeypatch, lambda_context):
    monkeypatch.setenv("VALIDATION_FRACTION", "1")

    with pytest.raises(MisconfiguredFunction) as raised:
        handler.main(event(f"s3://{BUCKET}/{KEY}"), lambda_context)

    assert str(raised.value) == (
        "counting_core.contracts.prepare_training_data: VALIDATION_FRACTION: "
        "Input should be less than 1 (got '1')"
    )
