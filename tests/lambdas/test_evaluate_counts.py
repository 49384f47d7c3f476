"""The evaluate-counts Lambda against moto's S3, on the hand-checked example of examples/evaluation.

The validation manifest and the responses are the ones ``counting evaluate`` is checked
on (tests/cli/test_cli_evaluate.py), laid out as a training run leaves them: the manifest
under training/manifests/<run>/, the Batch Transform answers under
training/models/<run>/predictions/ with the image's folder kept.
"""

from __future__ import annotations

import importlib
import io
import json
import sys
from pathlib import Path

import boto3
import pytest
from PIL import Image

from counting_core.models.evaluation import EvaluationSummary
from tests.lambdas.conftest import ACCOUNT, REGION

PREFIX = "object-counting-dev"
BUCKET = f"{PREFIX}-data-{ACCOUNT}-{REGION}"
RUN = f"{PREFIX}-20261126-173000-a1b2c3"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "evaluation"
MANIFEST_KEY = f"training/manifests/{RUN}/validation.manifest"
PREDICTIONS = f"training/models/{RUN}/predictions/"


@pytest.fixture
def handler(aws, monkeypatch):
    """The handler module, imported with the environment the stack gives it."""
    for name, value in {
        "BUCKET": BUCKET,
        "POWERTOOLS_SERVICE_NAME": "evaluate-counts",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    sys.modules.pop("lambdas.evaluate_counts.handler", None)
    module = importlib.import_module("lambdas.evaluate_counts.handler")
    yield module
    module.evaluator.cache_clear()


def s3():
    return boto3.client("s3", region_name=REGION)


def put(key: str, body: bytes) -> None:
    s3().put_object(Bucket=BUCKET, Key=key, Body=body)


def read(key: str) -> bytes:
    return s3().get_object(Bucket=BUCKET, Key=key)["Body"].read()


def upload_run(*, skip: str | None = None) -> None:
    text = (EXAMPLE / "validation.manifest").read_text()
    put(MANIFEST_KEY, text.replace("s3://my-counting-data/", f"s3://{BUCKET}/").encode())
    for response in sorted((EXAMPLE / "responses").iterdir()):
        if response.name != skip:
            # Batch Transform may keep the input's folder (street/) under the output path.
            put(f"{PREDICTIONS}street/{response.name}", response.read_bytes())


def event() -> dict:
    """What the EvaluateCounts state sends."""
    return {
        "runName": RUN,
        "validationManifestUri": f"s3://{BUCKET}/{MANIFEST_KEY}",
        "labelAttribute": "vehicles",
        "predictionsUri": f"s3://{BUCKET}/{PREDICTIONS}",
    }


def test_writes_the_report_and_the_plot_and_returns_the_figures(handler, lambda_context):
    upload_run()
    summary = EvaluationSummary.model_validate(handler.main(event(), lambda_context))

    folder = f"s3://{BUCKET}/training/models/{RUN}/"
    # Hand-checked in tests/cli/test_cli_evaluate.py.
    assert summary == EvaluationSummary(
        images=4,
        best_threshold=0.35,
        mae=0.25,
        wape=0.125,
        mape=0.0833,
        exact_accuracy=0.75,
        bias=-0.25,
        report_uri=f"{folder}evaluation.json",
        plot_uri=f"{folder}evaluation.png",
    )
    report = json.loads(read(f"training/models/{RUN}/evaluation.json"))
    assert report["run"] == RUN
    assert report["best_threshold"] == 0.35
    assert report["capped_images"] == 0  # the example's responses do not say their cap
    assert [entry["source_ref"] for entry in report["review_queue"]] == [
        f"s3://{BUCKET}/labeling/images/street/street-5.jpg"
    ]
    plot = Image.open(io.BytesIO(read(f"training/models/{RUN}/evaluation.png")))
    assert plot.format == "PNG"


def test_the_report_counts_the_validation_images_whose_responses_hit_the_cap(
    handler, lambda_context
):
    upload_run()
    # street-5 has 3 detections and street-2 has 2: a cap of 3 is reached by street-5 only.
    for name in ("street-5.jpg.out", "street-2.jpg.out"):
        response = json.loads((EXAMPLE / "responses" / name).read_bytes())
        put(f"{PREDICTIONS}street/{name}", json.dumps({**response, "max_detections": 3}).encode())

    handler.main(event(), lambda_context)

    report = json.loads(read(f"training/models/{RUN}/evaluation.json"))
    assert report["capped_images"] == 1
    assert report["mae"] == 0.25  # the figures are the uncapped example's


def test_a_missing_response_fails_the_evaluation_naming_the_image(handler, lambda_context):
    upload_run(skip="street-2.jpg.out")
    with pytest.raises(handler.EvaluationFailed, match=r"no response for image .*street-2\.jpg"):
        handler.main(event(), lambda_context)


def test_a_missing_validation_manifest_is_the_evaluations_own_error_naming_it(
    handler, lambda_context
):
    # Nothing uploaded: GetObject answers NoSuchKey, which must not escape as itself.
    with pytest.raises(handler.EvaluationFailed) as failed:
        handler.main(event(), lambda_context)

    assert str(failed.value) == f"run {RUN}: s3://{BUCKET}/{MANIFEST_KEY} does not exist"


def test_a_response_in_the_wrong_shape_names_its_file(handler, lambda_context):
    upload_run()
    put(f"{PREDICTIONS}street/street-3.jpg.out", b'{"predictions": []}')
    with pytest.raises(handler.EvaluationFailed, match=r"street-3\.jpg\.out: missing 'prediction'"):
        handler.main(event(), lambda_context)


def test_a_request_outside_the_run_folders_is_refused(handler, lambda_context):
    upload_run()
    request = event() | {"validationManifestUri": f"s3://{BUCKET}/incoming/x.manifest"}
    with pytest.raises(handler.EvaluationFailed, match="is not under"):
        handler.main(request, lambda_context)


def test_a_malformed_request_is_one_line(handler, lambda_context):
    with pytest.raises(handler.EvaluationFailed, match="not an evaluation request: runName"):
        handler.main({"predictionsUri": "s3://x/y/"}, lambda_context)


# --- Champion and challenger: the active model on the same images --------------------------

CHAMPION_MODEL = f"{PREFIX}-20261101-090000-0f0f0f"
CHAMPION_PREDICTIONS = f"training/models/{RUN}/champion-predictions/"


def upload_champion(answer: bytes) -> None:
    """The active model's answers for the same four images, each ``answer``."""
    for response in sorted((EXAMPLE / "responses").iterdir()):
        put(f"{CHAMPION_PREDICTIONS}street/{response.name}", answer)


# The run's classes (Prepare's map) and the active model's, as its record holds them.
CLASSES = {"0": "car", "1": "truck"}


def with_champion(champion_classes: dict[str, str] = CLASSES) -> dict:
    return event() | {
        "classMap": CLASSES,
        "champion": {
            "modelName": CHAMPION_MODEL,
            "classMap": champion_classes,
            "predictionsUri": f"s3://{BUCKET}/{CHAMPION_PREDICTIONS}",
        },
    }


def test_the_active_model_is_measured_on_the_same_images_side_by_side(handler, lambda_context):
    upload_run()
    # A champion that finds nothing: it counts 0 on every image. The four images hold 3, 1, 0
    # and 4 objects (8 in all), so at every threshold its errors are 3, 1, 0, 4: MAE 8 / 4 = 2,
    # WAPE 8 / 8 = 1, bias -8 / 4 = -2; thresholds tie and the lowest (0.05) is kept.
    upload_champion(b'{"prediction": []}')

    result = handler.main(with_champion(), lambda_context)

    # The new model's figures are unchanged (hand-checked above): MAE 0.25 <= 2, it is better.
    assert EvaluationSummary.model_validate(result).mae == 0.25
    assert result["champion"] == {
        "modelName": CHAMPION_MODEL,
        "images": 4,
        "bestThreshold": 0.05,
        "mae": 2.0,
        "wape": 1.0,
        "bias": -2.0,
    }
    report = json.loads(read(f"training/models/{RUN}/evaluation.json"))
    assert (report["mae"], report["champion"]["mae"]) == (0.25, 2.0)
    assert report["champion"]["model"] == CHAMPION_MODEL
    assert report["champion"]["predictions"] == f"s3://{BUCKET}/{CHAMPION_PREDICTIONS}"
    # Its review queue: the images it miscounts, largest error first (street-3 it gets right).
    assert [
        (image["true_count"], image["predicted_count"])
        for image in report["champion"]["review_queue"]
    ] == [(4, 0), (3, 0), (1, 0)]


def test_an_active_model_for_other_classes_is_not_compared(handler, lambda_context):
    # Counts are totals over every class: a model trained for cars alone would be scored
    # against labels that count trucks too. No answers of it are read (none were uploaded).
    upload_run()

    result = handler.main(with_champion({"0": "car"}), lambda_context)

    assert result["champion"] is None  # the gate then treats the run as a first model
    report = json.loads(read(f"training/models/{RUN}/evaluation.json"))
    assert report["champion"] == {
        "model": CHAMPION_MODEL,
        "not_compared": 'its class map {"0": "car"} is not this run\'s {"0": "car", "1": "truck"}',
    }


def test_without_an_active_model_the_champion_is_null(handler, lambda_context):
    upload_run()

    result = handler.main(event() | {"champion": {}}, lambda_context)

    assert result["champion"] is None
    assert "champion" not in json.loads(read(f"training/models/{RUN}/evaluation.json"))


def test_an_active_model_missing_an_answer_fails_the_evaluation(handler, lambda_context):
    upload_run()
    put(f"{CHAMPION_PREDICTIONS}street/street-1.jpg.out", b'{"prediction": []}')

    with pytest.raises(handler.EvaluationFailed, match=r"no response for image .*street-2\.jpg"):
        handler.main(with_champion(), lambda_context)
