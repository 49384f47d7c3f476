"""One training run's names, inputs and outputs (``counting.training``)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from counting_core.datasets import manifest
from counting_core.errors import InputError
from counting_core.models import training
from counting_core.models.training import DataNotTrainable

BUCKET = "object-counting-dev-data-123456789012-eu-west-1"
STARTED = datetime(2026, 11, 26, 17, 30, 5, 123000, tzinfo=UTC)
# SageMaker's rule for training job, model and endpoint config names.
SAGEMAKER_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
# What config.py accepts for project and stage (stacks.config._NAME), joined by "-".
NAME_PART = st.from_regex(r"[a-z][a-z0-9-]{1,23}", fullmatch=True)


def test_run_name_is_the_prefix_the_start_time_and_a_digest_of_the_execution():
    name = training.run_name("object-counting-dev", "arn:...:execution:m:run-1", STARTED)

    assert re.fullmatch(r"object-counting-dev-20261126-173005-[0-9a-f]{6}", name)
    # same code: a retried step asks again and must get the same name.
    assert name == training.run_name("object-counting-dev", "arn:...:execution:m:run-1", STARTED)
    assert name != training.run_name("object-counting-dev", "arn:...:execution:m:run-2", STARTED)


@given(project=NAME_PART, stage=NAME_PART, execution=st.text(min_size=1))
def test_run_names_fit_sagemaker_whenever_the_prefix_fits(project, stage, execution):
    prefix = f"{project}-{stage}"
    name = training.run_name(prefix, execution, STARTED)

    # The run's jobs: its own, and the active model's transform job over its images.
    champion_job = f"{name}{training.CHAMPION_JOB_SUFFIX}"
    if len(prefix) <= training.MAX_PREFIX_LENGTH:
        assert SAGEMAKER_NAME.fullmatch(name)
        assert SAGEMAKER_NAME.fullmatch(champion_job)
    else:
        assert len(champion_job) > training.MAX_SAGEMAKER_NAME


@pytest.mark.parametrize(
    "key", ["training/requests/a.manifest", "labeling/output/job/manifests/output/output.manifest"]
)
def test_manifests_are_read_from_training_requests_and_labeling_output(key):
    assert training.manifest_key(f"s3://{BUCKET}/{key}", BUCKET) == key


@pytest.mark.parametrize(
    "uri",
    [
        f"s3://{BUCKET}/incoming/a.manifest",
        f"s3://{BUCKET}/training/requests/",
        "s3://other-bucket/training/requests/a.manifest",
        "training/requests/a.manifest",
    ],
)
def test_other_manifest_locations_are_refused(uri):
    with pytest.raises(DataNotTrainable, match="is not an object under"):
        training.manifest_key(uri, BUCKET)


def test_a_prepared_run_names_its_files_and_carries_the_data_hyperparameters():
    split = manifest.SplitResult(
        label_attribute="vehicles",
        class_map={"0": "car", "1": "truck"},
        num_training_samples=3,
        num_validation_samples=1,
        label_width=352,
        dropped_failed=1,
        dropped_empty=0,
    )

    run = training.prepared_run(name="r", bucket=BUCKET, split=split, figures=split.figures())

    assert run.model_dump(by_alias=True) == {
        "runName": "r",
        "labelAttribute": "vehicles",
        "attributeNames": ("source-ref", "vehicles"),
        "classMap": {"0": "car", "1": "truck"},
        "trainManifestUri": f"s3://{BUCKET}/training/manifests/r/train.manifest",
        "validationManifestUri": f"s3://{BUCKET}/training/manifests/r/validation.manifest",
        "validationImagesUri": f"s3://{BUCKET}/training/manifests/r/validation-images.manifest",
        "imagesUri": f"s3://{BUCKET}/training/manifests/r/images.manifest",
        "dataReportUri": f"s3://{BUCKET}/training/manifests/r/data-report.json",
        "hyperparameters": {"num_classes": "2", "num_training_samples": "3", "label_width": "352"},
        "figures": split.figures(),
    }


def test_a_training_request_is_written_and_read_with_camel_case_names():
    request = training.TrainingRequest(manifest_uri="s3://b/training/requests/a.manifest")

    assert request.payload() == {"manifestUri": "s3://b/training/requests/a.manifest"}
    read = training.TrainingRequest.model_validate(
        {"manifestUri": "s3://b/m", "labelAttribute": "vehicles", "labelingJobName": "j"}
    )
    assert (read.manifest_uri, read.label_attribute, read.labeling_job_name) == (
        "s3://b/m",
        "vehicles",
        "j",
    )


def test_transform_manifest_lists_keys_relative_to_the_prefix():
    prefix = "s3://data/labeling/images/"
    text = training.transform_manifest([f"{prefix}street/a.jpg", f"{prefix}b.png"], prefix)
    assert json.loads(text) == [{"prefix": prefix}, "street/a.jpg", "b.png"]
    with pytest.raises(InputError, match="is not under"):
        training.transform_manifest(["s3://other/a.jpg"], prefix)
