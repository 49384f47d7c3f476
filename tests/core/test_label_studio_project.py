"""What the app sends Label Studio: the labeling interface, the storages, the review queue's
predictions (percent values worked out by hand)."""

from __future__ import annotations

import re

import pytest

from counting_core.datasets import label_studio_project as project
from counting_core.errors import InputError

BUCKET = "object-counting-dev-data-123456789012-eu-west-1"
IMAGES = f"s3://{BUCKET}/labeling/images/street/"


def test_the_labeling_interface_offers_the_class_names_in_class_id_order():
    config = project.label_config(["car", "Lkw & Bus", 'say "hi"', "自転車"])

    # quoteattr: & escaped; a value holding double quotes gets single ones.
    assert config == (
        "<View>\n"
        '  <Image name="image" value="$image"/>\n'
        '  <RectangleLabels name="label" toName="image">\n'
        '    <Label value="car"/>\n'
        '    <Label value="Lkw &amp; Bus"/>\n'
        "    <Label value='say \"hi\"'/>\n"
        '    <Label value="自転車"/>\n'
        "  </RectangleLabels>\n"
        "</View>"
    )


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ([], "the class list is empty"),
        (["car", "car"], "the class list names 'car' more than once"),
        (["car", " "], "class names must be non-empty strings, got ' '"),
    ],
)
def test_a_class_list_no_interface_can_hold_is_refused(names, message):
    with pytest.raises(InputError, match=re.escape(message)):
        project.label_config(names)


def test_the_project_and_its_storages_are_what_the_stage_needs():
    fields = project.project_fields("object-counting-dev", ["car"])

    assert (fields["title"], fields["show_collab_predictions"]) == ("object-counting-dev", True)
    assert '<Label value="car"/>' in fields["label_config"]
    assert project.images_storage_fields(BUCKET) == {
        "title": "Images to label",
        "bucket": BUCKET,
        "prefix": "labeling/images/",
        "regex_filter": "(?i).*(\\.jpg|\\.jpeg|\\.jpe|\\.jfif|\\.png)$",
        "use_blob_urls": True,
        "recursive_scan": True,
        "presign": True,
    }
    # No slash: Label Studio writes <prefix>/<task id>.json.
    assert project.exports_storage_fields(BUCKET) == {
        "title": "Labeled tasks for training",
        "bucket": BUCKET,
        "prefix": "labeling/studio/exports",
        "can_delete_objects": True,
    }
    assert project.PLACEHOLDER_KEY == "labeling/images/README.txt"


@pytest.mark.parametrize(
    ("key", "is_task"),
    [
        ("labeling/images/street/a.jpg", True),
        ("labeling/images/b.JPEG", True),
        ("labeling/images/c.png", True),
        ("labeling/images/README.txt", False),
        ("labeling/images/d.jpg.json", False),
        ("labeling/images/e.gif", False),
    ],
)
def test_the_source_storage_makes_tasks_of_images_only(key, is_task):
    # Label Studio applies the filter with re.match on the whole key.
    assert bool(re.match(project.IMAGE_KEYS, key)) is is_task


def test_only_the_fields_that_differ_are_updated():
    wanted = {"title": "t", "prefix": "labeling/images/", "presign": True}
    current = {"id": 4, "title": "t", "prefix": "elsewhere/", "presign": True, "status": "ok"}

    assert project.changed_fields(wanted, current) == {"prefix": "labeling/images/"}
    assert project.changed_fields(wanted, {**current, **wanted}) == {}


def test_the_project_labels_are_those_label_studio_parsed():
    parsed = {"label": {"type": "RectangleLabels", "labels": ["car", "truck"]}}

    assert project.project_labels({"parsed_label_config": parsed}) == ["car", "truck"]
    assert project.project_labels({"parsed_label_config": {}}) == []


def detection(name: str, score: float, box: tuple[float, float, float, float]) -> dict:
    xmin, ymin, xmax, ymax = box
    return {
        "number": 1,
        "class_id": 0,
        "class_name": name,
        "score": score,
        "box": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax},
    }


def report(*entries: dict, run: str | None = "counting-20261201-101500-a1b2c3") -> dict:
    return {"run": run, "review_queue": list(entries)} if run else {"review_queue": list(entries)}


def entry(name: str, *detections: dict) -> dict:
    return {
        "source_ref": f"{IMAGES}{name}",
        "true_count": 4,
        "predicted_count": len(detections),
        "error": len(detections) - 4,
        "detections": list(detections),
    }


def test_the_review_queue_becomes_predictions_in_percent_of_the_image():
    request = project.review_request(
        report(
            entry(
                "5.jpg",
                detection("car", 0.95, (0.03, 0.62, 0.19, 0.76)),
                detection("truck", 0.71, (0.25, 0.125, 0.5, 0.375)),
            ),
            entry("6.jpg"),
        ),
        bucket=BUCKET,
    )

    assert request.model_version == "counting-20261201-101500-a1b2c3"
    first, second = request.predictions
    assert first.image == f"{IMAGES}5.jpg"
    # (0.95 + 0.71) / 2
    assert first.score == 0.83
    # x = xmin, y = ymin, width = xmax - xmin, height = ymax - ymin, times 100.
    assert first.result == [
        {
            "id": "box-1",
            "type": "rectanglelabels",
            "from_name": "label",
            "to_name": "image",
            "score": 0.95,
            "value": {"x": 3.0, "y": 62.0, "width": 16.0, "height": 14.0, "rotation": 0,
                      "rectanglelabels": ["car"]},
        },
        {
            "id": "box-2",
            "type": "rectanglelabels",
            "from_name": "label",
            "to_name": "image",
            "score": 0.71,
            "value": {"x": 25.0, "y": 12.5, "width": 25.0, "height": 25.0, "rotation": 0,
                      "rectanglelabels": ["truck"]},
        },
    ]  # fmt: skip
    # The model found nothing: the labeler starts from an empty image.
    assert (second.score, second.result) == (None, [])
    assert request.labels() == ["car", "truck"]
    assert project.unknown_labels(request, ["car", "bus"]) == ["truck"]
    assert project.review_request_key(request.model_version) == (
        "labeling/studio/reviews/counting-20261201-101500-a1b2c3.request.json"
    )


def test_a_model_version_given_names_the_predictions_of_a_report_without_run():
    request = project.review_request(
        report(entry("5.jpg"), run=None), bucket=BUCKET, model_version="my-model.v2"
    )

    assert request.model_version == "my-model.v2"


@pytest.mark.parametrize(
    ("evaluation", "message"),
    [
        ({"images": 3}, "not an evaluation report: no 'review_queue' list"),
        (report(), "the evaluation's review queue is empty: every image was counted exactly"),
        (
            report(entry("5.jpg"), run=None),
            "the evaluation names no run (counting evaluate writes none): give --model-version",
        ),
        (
            report(entry("5.jpg"), run="run 5"),
            "model version 'run 5': use letters, digits, '.', '_' and '-'",
        ),
        (
            report({**entry("5.jpg"), "source_ref": "s3://other-bucket/labeling/images/5.jpg"}),
            "review_queue[0]: image 's3://other-bucket/labeling/images/5.jpg' is not under "
            f"s3://{BUCKET}/labeling/images/, where the studio's tasks come from",
        ),
        (
            report({"source_ref": f"{IMAGES}5.jpg", "error": -1}),
            "review_queue[0]: no 'detections' (an evaluation.json written before they were "
            "listed): evaluate again",
        ),
        (
            report(entry("5.jpg", detection("car", 1.5, (0.1, 0.1, 0.2, 0.2)))),
            "review_queue[0].detections[0]: score must be a number from 0 to 1, got 1.5",
        ),
        (
            report(entry("5.jpg", detection("car", 0.5, (0.3, 0.1, 0.2, 0.2)))),
            "review_queue[0].detections[0]: the box's max corner lies before its min corner",
        ),
        (
            report(entry("5.jpg", detection("", 0.5, (0.1, 0.1, 0.2, 0.2)))),
            "review_queue[0].detections[0]: class_name must be a non-empty string, got ''",
        ),
    ],
)
def test_an_evaluation_that_cannot_become_a_review_is_refused_in_one_line(evaluation, message):
    with pytest.raises(InputError) as refused:
        project.review_request(evaluation, bucket=BUCKET)

    assert str(refused.value).startswith(message)


def test_tasks_are_found_by_their_image():
    tasks = [
        {"id": 1, "data": {"image": f"{IMAGES}5.jpg"}},
        {"id": 2, "data": {"image": f"{IMAGES}6.jpg"}},
        {"id": 3, "data": {"image": f"{IMAGES}5.jpg"}},
        {"id": 4, "data": {"text": "not an image task"}},
    ]

    assert project.tasks_by_image(tasks) == {f"{IMAGES}5.jpg": [1, 3], f"{IMAGES}6.jpg": [2]}
