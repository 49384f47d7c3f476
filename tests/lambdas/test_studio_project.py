"""The studio project function against a stand-in Label Studio (HTTP on 127.0.0.1) and moto:
the project set up and kept in step, CloudFormation answered, review queues put on tasks."""

from __future__ import annotations

import json

import boto3
import pytest

from counting_core.contracts.studio_project import Environment
from counting_core.datasets import label_studio_project as project
from lambdas.studio_project import handler
from lambdas.studio_project import service as service_module
from lambdas.studio_project.service import StudioProject
from lambdas.studio_project.studio_api import StudioApi, StudioRefused, StudioUnreachable
from tests.lambdas.conftest import REGION, deployed, make_bucket, object_created
from tests.lambdas.fake_label_studio import TOKEN, running_fake_label_studio

BUCKET = "object-counting-dev-data-123456789012-us-east-1"
IMAGES = f"s3://{BUCKET}/labeling/images/street/"
TITLE = "object-counting-dev"
RUN = "counting-20261201-101500-a1b2c3"


SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:studio-token-a1B2c3"


def environment(url: str, secret: str = SECRET) -> dict[str, str]:
    return {
        "BUCKET": BUCKET,
        "STUDIO_URL": url,
        "API_TOKEN_SECRET": secret,
        "PROJECT_TITLE": TITLE,
        "POWERTOOLS_SERVICE_NAME": "studio-project",
        "POWERTOOLS_METRICS_NAMESPACE": "ObjectCounting",
    }


@pytest.fixture
def studio(aws):
    """The fake Label Studio, the bucket, and the project service built as the handler does."""
    make_bucket(BUCKET)
    with running_fake_label_studio() as fake:
        service = StudioProject(
            Environment.read(environment(fake.url)),
            api=StudioApi(fake.url, TOKEN, patience=0),
            s3=boto3.client("s3", region_name=REGION),
        )
        yield fake, service


def read(key: str) -> str:
    s3 = boto3.client("s3", region_name=REGION)
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()


def test_the_project_is_created_with_the_labels_and_both_storages(studio):
    fake, service = studio

    project_id = service.set_up(("car", "truck"))

    created = fake.projects[project_id]
    assert created["title"] == TITLE
    assert created["parsed_label_config"]["label"]["labels"] == ["car", "truck"]
    assert created["show_collab_predictions"] is True
    (images,) = fake.storages["import"].values()
    assert (images["project"], images["prefix"], images["use_blob_urls"]) == (
        project_id,
        "labeling/images/",
        True,
    )
    # No keys: Label Studio reads and writes with its task role.
    assert not any("aws_access_key_id" in storage for kind in fake.storages.values()
                   for storage in kind.values())  # fmt: skip
    (exports,) = fake.storages["export"].values()
    assert (exports["project"], exports["prefix"]) == (project_id, "labeling/studio/exports")
    # The source storage is refused over an empty prefix: the placeholder keeps it from being.
    assert read("labeling/images/README.txt").startswith("Images to label go in folders")


def test_setting_up_again_changes_nothing(studio):
    fake, service = studio
    first = service.set_up(("car", "truck"))
    fake.calls.clear()

    again = service.set_up(("car", "truck"))

    assert again == first
    assert fake.writes() == []


def test_new_class_names_update_the_labeling_interface_only(studio):
    fake, service = studio
    project_id = service.set_up(("car", "truck"))
    fake.calls.clear()

    service.set_up(("car", "truck", "bus"))

    assert fake.writes() == [("PATCH", f"/api/projects/{project_id}/")]
    labels = fake.projects[project_id]["parsed_label_config"]["label"]["labels"]
    assert labels == ["car", "truck", "bus"]


def test_a_storage_changed_by_hand_is_put_back(studio):
    fake, service = studio
    service.set_up(("car",))
    (images,) = fake.storages["import"].values()
    images["prefix"] = "labeling/images/one-batch/"
    fake.calls.clear()

    service.set_up(("car",))

    assert fake.writes() == [("PATCH", f"/api/storages/s3/{images['id']}")]
    assert images["prefix"] == "labeling/images/"


def test_two_projects_of_the_stage_title_are_refused_naming_them(studio):
    fake, service = studio
    fake.projects[7] = {"id": 7, "title": TITLE}
    fake.projects[9] = {"id": 9, "title": TITLE}
    fake.projects[11] = {"id": 11, "title": f"{TITLE} (old)"}  # found by the filter, not kept

    with pytest.raises(project.InputError) as refused:
        service.set_up(("car",))

    assert str(refused.value) == (
        "2 Label Studio projects are titled 'object-counting-dev' (ids 7, 9): rename all but one"
    )


def cloudformation(fake, request_type: str, class_names: object, **more: str) -> dict:
    return {
        "RequestType": request_type,
        "ResponseURL": f"{fake.url}/cloudformation-answer",
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/studio/1",
        "RequestId": "request-1",
        "LogicalResourceId": "StudioLabelStudioProject",
        "ResourceType": "Custom::LabelStudioProject",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:...", "ClassNames": class_names},
        **more,
    }


def test_cloudformation_is_answered_with_the_project(studio):
    fake, service = studio

    outcome = handler.answer(cloudformation(fake, "Create", ["car"]), lambda: service)

    ((headers, answer),) = fake.answers
    project_id = outcome["project"]
    assert answer == {
        "Status": "SUCCESS",
        "Reason": "",
        "PhysicalResourceId": f"label-studio-project-{project_id}",
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/studio/1",
        "RequestId": "request-1",
        "LogicalResourceId": "StudioLabelStudioProject",
        "Data": {"ProjectId": str(project_id)},
    }
    # The presigned URL was signed without a content type.
    assert headers["Content-Type"] == ""


def test_a_setup_that_fails_is_answered_with_its_reason(studio):
    fake, service = studio
    request = cloudformation(fake, "Update", [], PhysicalResourceId="label-studio-project-3")

    outcome = handler.answer(request, lambda: service)

    ((_, answer),) = fake.answers
    assert (answer["Status"], answer["PhysicalResourceId"]) == ("FAILED", "label-studio-project-3")
    assert answer["Reason"].startswith("the studio project's properties: ClassNames:")
    assert outcome["status"] == "FAILED"


def test_label_studio_not_answering_fails_the_deployment_with_that_reason(aws):
    make_bucket(BUCKET)
    with running_fake_label_studio() as fake:
        # Nothing listens on port 9 of this machine.
        service = StudioProject(
            Environment.read(environment("http://127.0.0.1:9")),
            api=StudioApi("http://127.0.0.1:9", TOKEN, patience=0),
            s3=boto3.client("s3", region_name=REGION),
        )

        handler.answer(cloudformation(fake, "Create", ["car"]), lambda: service)

    ((_, answer),) = fake.answers
    assert answer["Status"] == "FAILED"
    assert answer["PhysicalResourceId"] == "StudioLabelStudioProject"
    assert answer["Reason"].startswith(
        "GET /api/projects/: Label Studio at http://127.0.0.1:9 did not answer"
    )


def test_deleting_the_resource_keeps_the_project_and_calls_nothing(studio):
    fake, _ = studio

    def no_service() -> StudioProject:
        raise AssertionError("a deletion needs no Label Studio")

    request = cloudformation(fake, "Delete", ["car"], PhysicalResourceId="label-studio-project-3")
    handler.answer(request, no_service)

    ((_, answer),) = fake.answers
    assert (answer["Status"], answer["PhysicalResourceId"]) == ("SUCCESS", "label-studio-project-3")
    assert fake.calls == []


def review_request(*images: str, labels: tuple[str, ...] = ("car",)) -> str:
    box = {"xmin": 0.1, "ymin": 0.2, "xmax": 0.3, "ymax": 0.6}
    queue = [
        {"source_ref": f"{IMAGES}{image}", "detections": [
            {"class_name": label, "score": 0.5, "box": box} for label in labels]}
        for image in images
    ]  # fmt: skip
    request = project.review_request({"run": RUN, "review_queue": queue}, bucket=BUCKET)
    return request.model_dump_json()


def upload(key: str, body: str) -> dict:
    s3 = boto3.client("s3", region_name=REGION)
    put = s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())
    return object_created(BUCKET, key, put)


REQUEST_KEY = f"labeling/studio/reviews/{RUN}.request.json"


def test_a_review_puts_the_predictions_on_the_synced_tasks(studio):
    fake, service = studio
    project_id = service.set_up(("car", "truck"))
    fake.images = [f"{IMAGES}{name}" for name in ("1.jpg", "2.jpg", "3.jpg")]

    outcome = handler.review(upload(REQUEST_KEY, review_request("1.jpg", "3.jpg")), service)

    by_image = {task["data"]["image"]: task_id for task_id, task in fake.tasks.items()}
    tasks = [by_image[f"{IMAGES}1.jpg"], by_image[f"{IMAGES}3.jpg"]]
    assert outcome == {
        "request": REQUEST_KEY,
        "project": project_id,
        "model_version": RUN,
        "tasks": tasks,
    }
    assert sorted(p["task"] for p in fake.predictions.values()) == tasks
    (value,) = [p["result"][0]["value"] for p in fake.predictions.values()][:1]
    assert (value["x"], value["y"], value["width"], value["height"]) == (10.0, 20.0, 20.0, 40.0)
    # Labelers are shown this model's predictions.
    assert fake.projects[project_id]["model_version"] == RUN
    imported = json.loads(read(f"labeling/studio/reviews/{RUN}.imported.json"))
    assert imported == outcome


def test_a_review_uploaded_again_replaces_its_predictions(studio):
    fake, service = studio
    service.set_up(("car",))
    fake.images = [f"{IMAGES}1.jpg"]
    handler.review(upload(REQUEST_KEY, review_request("1.jpg")), service)

    handler.review(upload(REQUEST_KEY, review_request("1.jpg")), service)

    assert len(fake.predictions) == 1


@pytest.mark.parametrize(
    ("images", "labels", "sync_fails", "reason"),
    [
        (
            ["1.jpg"],
            ("bus",),
            False,
            "the model's labels 'bus' are not the project's ('car', 'truck')",
        ),
        (
            [],
            ("car",),
            False,
            f"1 of the images have no task after syncing, e.g. {IMAGES}1.jpg: is it still there?",
        ),
        (
            ["1.jpg"],
            ("car",),
            True,
            "syncing 'Images to label' failed: Traceback ... ClientError: AccessDenied",
        ),
    ],
)
def test_a_review_label_studio_cannot_take_is_rejected_beside_the_request(
    studio, images, labels, sync_fails, reason
):
    fake, service = studio
    service.set_up(("car", "truck"))
    fake.images = [f"{IMAGES}{name}" for name in images]
    fake.sync_fails = sync_fails

    outcome = handler.review(upload(REQUEST_KEY, review_request("1.jpg", labels=labels)), service)

    assert outcome == {"request": REQUEST_KEY, "rejected": reason}
    assert json.loads(read(f"labeling/studio/reviews/{RUN}.rejected.json")) == outcome
    assert fake.predictions == {}


def test_a_file_that_is_no_review_request_is_rejected_in_one_line(studio):
    _, service = studio

    outcome = handler.review(upload(REQUEST_KEY, '{"model_version": "run-1"}'), service)

    assert outcome["rejected"] == "not a review request: predictions: missing"


def test_a_review_before_the_project_exists_is_rejected(studio):
    _, service = studio

    outcome = handler.review(upload(REQUEST_KEY, review_request("1.jpg")), service)

    assert outcome["rejected"] == (
        "no Label Studio project is titled 'object-counting-dev': the studio stack's "
        "deployment makes it"
    )


def test_label_studio_not_answering_a_review_raises_so_lambda_tries_again(aws):
    make_bucket(BUCKET)
    service = StudioProject(
        Environment.read(environment("http://127.0.0.1:9")),
        api=StudioApi("http://127.0.0.1:9", TOKEN, patience=0),
        s3=boto3.client("s3", region_name=REGION),
    )

    with pytest.raises(StudioUnreachable):
        handler.review(upload(REQUEST_KEY, review_request("1.jpg")), service)


def test_the_handler_reads_its_token_on_first_use_and_dispatches_by_event(
    aws, monkeypatch, lambda_context
):
    make_bucket(BUCKET)
    secrets = boto3.client("secretsmanager", region_name=REGION)
    secret = secrets.create_secret(Name="studio-token", SecretString=TOKEN)["ARN"]
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with (
        running_fake_label_studio() as fake,
        deployed(monkeypatch, environment(fake.url, secret), handler.project),
    ):
        created = handler.main(cloudformation(fake, "Create", ["car"]), lambda_context)
        fake.images = [f"{IMAGES}1.jpg"]
        reviewed = handler.main(upload(REQUEST_KEY, review_request("1.jpg")), lambda_context)

    assert created["status"] == "SUCCESS"
    assert reviewed["model_version"] == RUN


def test_label_studio_refusing_a_call_says_why_in_one_line(studio):
    fake, service = studio
    project_id = service.set_up(("car",))
    api = StudioApi(fake.url, TOKEN, patience=0)

    with pytest.raises(StudioRefused) as refused:
        api.patch(f"/api/projects/{project_id}/", {"model_version": "never-predicted"})

    assert str(refused.value) == (
        f"PATCH /api/projects/{project_id}/: 400 Validation error: model_version: Model "
        "version doesn't exist either as live model or as static predictions."
    )
    with pytest.raises(StudioRefused) as unauthorised:
        StudioApi(fake.url, "wrong-token", patience=0).get("/api/projects/")
    assert str(unauthorised.value) == "GET /api/projects/: 401 Invalid token."


def test_a_service_not_answering_yet_is_asked_again_until_the_patience_runs_out():
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    api = StudioApi("http://127.0.0.1:9", TOKEN, patience=20, clock=lambda: now[0], sleep=sleep)

    with pytest.raises(StudioUnreachable):
        api.get("/api/projects/")

    # 2, 4 and 8 seconds fit in 20; the next wait (15) would not.
    assert waits == [2.0, 4.0, 8.0]


def test_an_unexpected_failure_is_answered_too(aws):
    # No bucket: writing the placeholder fails with S3's own error.
    with running_fake_label_studio() as fake:
        service = StudioProject(
            Environment.read(environment(fake.url)),
            api=StudioApi(fake.url, TOKEN, patience=0),
            s3=boto3.client("s3", region_name=REGION),
        )

        handler.answer(cloudformation(fake, "Create", ["car"]), lambda: service)

    ((_, answer),) = fake.answers
    assert answer["Status"] == "FAILED"
    assert answer["Reason"].startswith("NoSuchBucket: An error occurred (NoSuchBucket)")


def test_every_page_of_tasks_is_read(studio, monkeypatch):
    fake, service = studio
    service.set_up(("car",))
    fake.images = [f"{IMAGES}{number}.jpg" for number in range(1, 6)]
    monkeypatch.setattr(service_module, "TASK_PAGE", 2)  # 5 tasks: pages of 2, 2 and 1

    outcome = handler.review(upload(REQUEST_KEY, review_request("5.jpg")), service)

    assert len(outcome["tasks"]) == 1
    assert [path for method, path in fake.calls if path == "/api/tasks/"] == ["/api/tasks/"] * 3
