"""Labeling requests, job inputs and the CreateLabelingJob request, without AWS."""

from __future__ import annotations

import json
import re
import string
from datetime import UTC, datetime
from pathlib import Path

import botocore.session
import pytest
from botocore.validate import validate_parameters
from hypothesis import given
from hypothesis import strategies as st

from counting_core.datasets import labeling
from counting_core.errors import InputError

BUCKET = "object-counting-dev-data-123456789012-eu-west-1"
TEMPLATE = (
    Path(__file__).parents[2] / "lambdas" / "labeling_launcher" / "worker_template.liquid.html"
).read_text()
DEFAULTS = labeling.TaskDefaults(
    workers_per_object=1, task_time_limit_seconds=300, task_availability_seconds=864000
)
ROLE_ARN = "arn:aws:iam::123456789012:role/ground-truth"
WORKTEAM_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:workteam/private-crowd/workers"
KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def request_data(**changes) -> dict:
    data = {
        "batch_name": "street-2026-11",
        "image_prefix": "labeling/images/street/",
        "labels": ["car", "person"],
        "label_attribute": "vehicles",
        "instructions": {"short": "Draw a box around every car and every person."},
    }
    data.update(changes)
    return data


def reason(**changes) -> str:
    with pytest.raises(InputError) as error:
        labeling.parse_request(request_data(**changes), bucket=BUCKET)
    return str(error.value)


def test_a_minimal_request_leaves_task_settings_to_the_deployment():
    request = labeling.parse_request(request_data(), bucket=BUCKET)

    assert request.image_prefix == "labeling/images/street/"
    assert request.task_settings(DEFAULTS) == DEFAULTS


def test_request_task_settings_override_the_deployment_defaults():
    request = labeling.parse_request(
        request_data(workers_per_object=3, task_time_limit_seconds=600), bucket=BUCKET
    )

    assert request.task_settings(DEFAULTS) == labeling.TaskDefaults(3, 600, 864000)


@pytest.mark.parametrize(
    ("given_prefix", "key_prefix"),
    [
        ("labeling/images/street", "labeling/images/street/"),
        (f"s3://{BUCKET}/labeling/images/street/", "labeling/images/street/"),
        (f"s3://{BUCKET}/labeling/images/a/b", "labeling/images/a/b/"),
    ],
)
def test_image_prefix_becomes_a_folder_key_in_the_data_bucket(given_prefix, key_prefix):
    request = labeling.parse_request(request_data(image_prefix=given_prefix), bucket=BUCKET)
    assert request.image_prefix == key_prefix


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"colour": "red"}, "colour: unknown key"),
        ({"labels": [f"l{i}" for i in range(11)]}, "labels: List should have at most 10 items"),
        ({"labels": []}, "labels: List should have at least 1 item"),
        ({"labels": ["car", " car"]}, "labels: Value error, labels repeat: car"),
        ({"labels": ["car", "  "]}, "labels: Value error, a label is empty"),
        ({"label_attribute": "boxes-ref"}, "must not end in '-ref'"),
        ({"label_attribute": "boxes-metadata-v2"}, "must not contain '-metadata'"),
        ({"label_attribute": "boxes_v2"}, "letters, digits and hyphens, starting and ending"),
        ({"label_attribute": "a" * 128}, "at most 127 characters"),
        ({"image_prefix": "incoming/"}, "must be a folder under labeling/images/"),
        ({"image_prefix": "labeling/images/"}, "must be a folder under labeling/images/"),
        ({"image_prefix": "s3://other/labeling/images/x/"}, "is not in the data bucket"),
        ({"workers_per_object": 10}, "workers_per_object: Input should be less than or equal"),
        ({"workers_per_object": "2"}, "workers_per_object: Input should be a valid integer"),
        ({"batch_name": "a b"}, "batch_name: String should match pattern"),
        ({"instructions": {"short": "x" * 256}}, "instructions.short: String should have at most"),
        ({"instructions": {}}, "instructions.short: missing"),
        ({"instructions": {"short": "Box cars.\r\nNot vans."}}, "instructions.short: must be one"),
        (
            {"instructions": {"short": "Box cars.\u2028Not vans."}},
            "instructions.short: must be one",
        ),
        ({"instructions": "Box cars"}, "instructions: must be a JSON object"),
    ],
)
def test_a_bad_request_is_refused_with_one_line_naming_the_field(changes, expected):
    text = reason(**changes)
    assert expected.removeprefix("labels: Value error, ") in text
    assert "\n" not in text


def test_every_problem_is_reported_at_once():
    text = reason(labels=[], extra=1)
    assert "labels:" in text
    assert "extra: unknown key" in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"batch_name: x", "the request is not valid JSON: expected value at line 1 column 1"),
        (b"\xff\xfe{", "the request is not UTF-8 text but UTF-16: save it as UTF-8"),
        (b'{"batch_name": "stra\xdfe"}', "the request is not UTF-8 text (byte 21)"),
        (b"[]", "the request is a JSON array of 0 item(s); a request is one JSON object"),
        (b'"street"', "request: must be a JSON object"),
        (b"", "the request is empty"),
        (b"{}\n{}\n", "the request has more than one JSON value: another one starts at line 2"),
        (
            b'{"batch_name": "str',
            "the request ends at line 1 column 19 before its JSON is complete",
        ),
        (b"[" * 100 + b"]" * 100, "the request has JSON nested more than 32 levels deep"),
        (b'{"workers_per_object": ' + b"9" * 41 + b"}", "has a number of 41 characters"),
        (b'{"labels": ["\\udc00"]}', "a \\u escape that is half of a character"),
        (b" " * (labeling.MAX_REQUEST_BYTES + 1), "the request is 65,537 bytes; a request has at"),
    ],
)
def test_request_files_are_bounded_json_objects(text, message):
    with pytest.raises(InputError) as caught:
        labeling.parse_request_json(text, bucket=BUCKET)

    assert message in str(caught.value)


def test_a_request_saved_with_a_byte_order_mark_is_read_as_manifests_are():
    request = {"batch_name": "street-2026-11", "labels": ["car"]}
    text = b"\xef\xbb\xbf" + json.dumps(request).encode()

    with pytest.raises(InputError) as caught:
        labeling.parse_request_json(text, bucket=BUCKET)

    # Read as JSON: what is left are the fields this request lacks, not a parse error.
    assert "not valid JSON" not in str(caught.value)
    assert "image_prefix: missing" in str(caught.value)


# Hand-checked against CreateLabelingJob's LabelAttributeName rules: the API pattern,
# at most 127 characters, no "-ref" ending, no "-metadata" inside.
attribute_alphabet = string.ascii_letters + string.digits + "-_ ."


@given(st.text(alphabet=attribute_alphabet, min_size=1, max_size=140))
def test_label_attribute_rule(name):
    valid = (
        len(name) <= 127
        and re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*", name) is not None
        and not name.endswith("-ref")
        and "-metadata" not in name
    )
    try:
        labeling.parse_request(request_data(label_attribute=name), bucket=BUCKET)
        accepted = True
    except InputError:
        accepted = False
    assert accepted == valid


@given(
    labels=st.lists(
        st.text(alphabet=string.ascii_letters + " ", min_size=1, max_size=12), max_size=14
    )
)
def test_labels_are_one_to_ten_distinct_names(labels):
    names = [label.strip() for label in labels]
    valid = 1 <= len(names) <= 10 and all(names) and len(set(names)) == len(names)
    try:
        request = labeling.parse_request(request_data(labels=labels), bucket=BUCKET)
        assert request.labels == names
        accepted = True
    except InputError:
        accepted = False
    assert accepted == valid


@given(
    stem=st.text(alphabet=string.ascii_letters + string.digits + "/-_.", max_size=20),
    extension=st.sampled_from(["jpg", "jpeg", "png"]),
    case=st.lists(st.booleans(), min_size=4, max_size=4),
)
def test_jpeg_and_png_keys_are_images_in_any_letter_case(stem, extension, case):
    mixed = "".join(c.upper() if up else c for c, up in zip(extension, case, strict=False))
    assert labeling.is_image_key(f"{stem}.{mixed}")


@given(
    stem=st.text(alphabet=string.ascii_letters + "/-_.", max_size=20),
    extension=st.sampled_from(["gif", "webp", "json", "jpg.txt", "png/", "tiff", ""]),
)
def test_other_keys_are_not_images(stem, extension):
    assert not labeling.is_image_key(f"{stem}.{extension}")


def test_input_manifest_has_one_source_ref_line_per_image():
    text = labeling.build_input_manifest(
        BUCKET, ["labeling/images/a/1.jpg", "labeling/images/a/2.PNG"]
    )
    assert text.splitlines() == [
        f'{{"source-ref":"s3://{BUCKET}/labeling/images/a/1.jpg"}}',
        f'{{"source-ref":"s3://{BUCKET}/labeling/images/a/2.PNG"}}',
    ]
    assert text.endswith("\n")


def test_an_empty_batch_is_refused():
    with pytest.raises(InputError, match="no JPEG or PNG images"):
        labeling.build_input_manifest(BUCKET, [])


def test_label_category_file_keeps_label_order():
    assert labeling.label_category_config(["car", "person"]) == {
        "document-version": "2018-11-28",
        "labels": [{"label": "car"}, {"label": "person"}],
    }


@given(prefix=st.from_regex(r"[a-z][a-z0-9-]{1,23}-[a-z][a-z0-9-]{1,23}", fullmatch=True))
def test_job_names_are_unique_lowercase_and_valid(prefix):
    first = labeling.unique_job_name(prefix)
    second = labeling.unique_job_name(prefix)
    for name in (first, second):
        assert name.startswith(f"{prefix}-")
        assert len(name) <= 63
        assert name == name.lower()
        assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", name)
    assert first != second


def test_the_same_request_version_asks_for_the_same_job_name():
    version = "bucket/labeling/requests/a.json#v1"
    assert labeling.unique_job_name("p", version) == labeling.unique_job_name("p", version)
    assert labeling.unique_job_name("p", version) != labeling.unique_job_name("p", version + "x")


def test_a_prefix_too_long_for_a_unique_name_is_a_programming_error():
    with pytest.raises(ValueError, match="too little room"):
        labeling.unique_job_name("a" * 51)


def test_bounding_box_functions_per_region():
    assert labeling.bounding_box_lambda_arns("us-east-1") == (
        "arn:aws:lambda:us-east-1:432418664414:function:PRE-BoundingBox",
        "arn:aws:lambda:us-east-1:432418664414:function:ACS-BoundingBox",
    )
    assert labeling.bounding_box_lambda_arns("eu-west-1")[1] == (
        "arn:aws:lambda:eu-west-1:568282634449:function:ACS-BoundingBox"
    )


def test_a_region_without_ground_truth_is_named():
    with pytest.raises(
        InputError, match="Ground Truth bounding-box jobs are not available in region sa-east-1"
    ):
        labeling.bounding_box_lambda_arns("sa-east-1")


def test_the_region_table_matches_the_sdk_documentation():
    """botocore ships the HumanTaskConfig reference page the table comes from."""
    model = botocore.session.get_session().get_service_model("sagemaker")
    documentation = (
        model.shape_for("HumanTaskConfig").members["PreHumanTaskLambdaArn"].documentation
    )
    documented = dict(
        re.findall(r"arn:aws:lambda:([a-z0-9-]+):(\d{12}):function:PRE-BoundingBox", documentation)
    )
    assert dict(labeling.BOUNDING_BOX_FUNCTION_ACCOUNTS) == documented


def create_labeling_job_request(data: dict, region: str, job_name: str) -> dict:
    """The CreateLabelingJob request the launcher builds for request ``data``."""
    return labeling.build_create_labeling_job_request(
        request=labeling.parse_request(data, bucket=BUCKET),
        job_name=job_name,
        bucket=BUCKET,
        role_arn=ROLE_ARN,
        workteam_arn=WORKTEAM_ARN,
        kms_key_arn=KEY_ARN,
        region=region,
        defaults=DEFAULTS,
    )


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "ap-southeast-2"])
def test_create_labeling_job_request_is_valid_for_the_api(region):
    job_name = labeling.unique_job_name("object-counting-dev")

    kwargs = create_labeling_job_request(request_data(workers_per_object=3), region, job_name)

    model = botocore.session.get_session().get_service_model("sagemaker")
    validate_parameters(kwargs, model.operation_model("CreateLabelingJob").input_shape)
    folder = f"s3://{BUCKET}/labeling/input/{job_name}/"
    assert kwargs["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"] == (
        f"{folder}input.manifest"
    )
    assert kwargs["LabelCategoryConfigS3Uri"] == f"{folder}categories.json"
    task = kwargs["HumanTaskConfig"]
    assert task["UiConfig"]["UiTemplateS3Uri"] == f"{folder}worker-template.liquid.html"
    assert task["PreHumanTaskLambdaArn"].startswith(f"arn:aws:lambda:{region}:")
    assert task["NumberOfHumanWorkersPerDataObject"] == 3
    assert task["TaskTimeLimitInSeconds"] == 300
    assert kwargs["OutputConfig"] == {
        "S3OutputPath": f"s3://{BUCKET}/labeling/output/street-2026-11/",
        "KmsKeyId": KEY_ARN,
    }


def test_worker_template_has_the_instructions_escaped_for_html_and_liquid():
    request = labeling.parse_request(
        request_data(
            instructions={
                "short": 'Box <every> "car" {{ task.input }}',
                "full": "Line one\nLine {% two %}",
            }
        ),
        bucket=BUCKET,
    )

    html = labeling.render_worker_template(TEMPLATE, request)

    assert "<crowd-bounding-box" in html
    assert "{{ task.input.taskObject | grant_read_access }}" in html
    assert "{{ task.input.labels | to_json | escape }}" in html
    assert 'header="Box &lt;every&gt; &quot;car&quot; &#123;&#123; task.input &#125;&#125;"' in html
    assert "Line one<br>Line &#123;% two %&#125;" in html
    assert "Labels: car, person" in html
    assert "$" not in html


def test_worker_template_falls_back_on_default_full_instructions():
    request = labeling.parse_request(request_data(), bucket=BUCKET)
    assert "Draw one tight box around every object" in labeling.render_worker_template(
        TEMPLATE, request
    )


@pytest.mark.parametrize(
    ("key", "is_request"),
    [
        ("labeling/requests/a.json", True),
        ("labeling/requests/team/a.json", True),
        ("labeling/requests/a.rejected.json", False),
        ("labeling/requests/a.txt", False),
        ("incoming/a.json", False),
    ],
)
def test_only_request_files_start_jobs(key, is_request):
    assert labeling.is_request_key(key) is is_request


def test_rejection_is_written_beside_the_request_with_one_line():
    document = labeling.rejection_document(
        "labeling/requests/a.json",
        "labels: too many\n  and more",
        datetime(2026, 11, 26, tzinfo=UTC),
    )
    assert labeling.rejection_key("labeling/requests/a.json") == "labeling/requests/a.rejected.json"
    assert json.loads(document.model_dump_json()) == {
        "request": "labeling/requests/a.json",
        "reason": "labels: too many and more",
        "time": "2026-11-26T00:00:00+00:00",
    }


def test_job_name_from_arn():
    arn = "arn:aws:sagemaker:eu-west-1:123456789012:labeling-job/object-counting-dev-abc"
    assert labeling.job_name_from_arn(arn) == "object-counting-dev-abc"
    with pytest.raises(InputError):
        labeling.job_name_from_arn("arn:aws:sagemaker:eu-west-1:123456789012:training-job/x")


def test_completion_event_is_the_training_contract():
    entry = labeling.completion_event(
        source=labeling.completion_event_source("object-counting-dev"),
        job_name="object-counting-dev-abc",
        manifest_uri="s3://b/labeling/output/x/object-counting-dev-abc/manifests/output/output.manifest",
        label_attribute="vehicles",
    )
    assert entry["Source"] == "object-counting-dev.labeling"
    assert entry["DetailType"] == "Labeling Job Completed"
    assert json.loads(entry["Detail"]) == {
        "labelingJobName": "object-counting-dev-abc",
        "manifestUri": "s3://b/labeling/output/x/object-counting-dev-abc/manifests/output/output.manifest",
        "labelAttribute": "vehicles",
    }


def test_a_label_that_is_no_unicode_text_is_refused_in_one_line():
    # "\ud800" is valid JSON (a lone surrogate escape) but no text: it cannot be written as
    # UTF-8 into the label categories file, and would have stopped the launcher.
    data = request_data() | {"labels": ["car", "\ud800"]}

    with pytest.raises(InputError) as refused:
        labeling.parse_request(data, bucket=BUCKET)

    assert str(refused.value) == (
        "request: labels[1]: holds a lone surrogate (\\ud800-\\udfff), not text"
    )
