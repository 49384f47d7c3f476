"""The evaluate-counts Lambda against moto's S3, on the hand-checked example of examples/evaluation.

The validation manifest and the responses are the ones ``counting evaluate`` is checked
on (tests/cli/test_cli_evaluate.py), laid out as a training run leaves them: the manifest
under training/manifests/<run>/, the Batch Transform answers under
training/models/<run>/predictions/ with the image's folder kept.
"""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import boto3
import pytest
from PIL import Image

from counting_core.contracts.environment import MisconfiguredFunction
from counting_core.contracts.evaluate_counts import Environment
from counting_core.models.evaluation import EvaluationSummary
from lambdas.evaluate_counts import handler
from lambdas.evaluate_counts.service import EvaluationFailed, RunEvaluator
from tests.lambdas.conftest import ACCOUNT, REGION, deployed

PREFIX = "object-counting-dev"
BUCKET = f"{PREFIX}-data-{ACCOUNT}-{REGION}"
RUN = f"{PREFIX}-20261126-173000-a1b2c3"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "evaluation"
MANIFEST_KEY = f"training/manifests/{RUN}/validation.manifest"
PREDICTIONS = f"training/models/{RUN}/predictions/"


# The environment the training stack gives the function.
ENVIRONMENT = {
    "BUCKET": BUCKET,
    "POWERTOOLS_SERVICE_NAME": "evaluate-counts",
    "POWERTOOLS_METRICS_NAMESPACE": "ObjectCounting",
}


@pytest.fixture
def evaluator(aws) -> RunEvaluator:
    """The evaluator of that environment over moto's S3, its bucket created."""
    s3().create_bucket(Bucket=BUCKET)
    return RunEvaluator(Environment.model_validate(ENVIRONMENT), s3=s3())


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


def test_writes_the_report_and_the_plot_and_returns_the_figures(evaluator):
    upload_run()
    summary = EvaluationSummary.model_validate(handler.evaluate(event(), evaluator))

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
    evaluator,
):
    upload_run()
    # street-5 has 3 detections and street-2 has 2: a cap of 3 is reached by street-5 only.
    for name in ("street-5.jpg.out", "street-2.jpg.out"):
        response = json.loads((EXAMPLE / "responses" / name).read_bytes())
        put(f"{PREDICTIONS}street/{name}", json.dumps({**response, "max_detections": 3}).encode())

    handler.evaluate(event(), evaluator)

    report = json.loads(read(f"training/models/{RUN}/evaluation.json"))
    assert report["capped_images"] == 1
    assert report["mae"] == 0.25  # the figures are the uncapped example's


def test_a_missing_response_fails_the_evaluation_naming_the_image(evaluator):
    upload_run(skip="street-2.jpg.out")
    with pytest.raises(EvaluationFailed, match=r"no response for image .*street-2\.jpg"):
        handler.evaluate(event(), evaluator)


def test_a_missing_validation_manifest_is_the_evaluations_own_error_naming_it(
    evaluator,
):
    # Nothing uploaded: GetObject answers NoSuchKey, which must not escape as itself.
    with pytest.raises(EvaluationFailed) as failed:
        handler.evaluate(event(), evaluator)

    assert str(failed.value) == f"run {RUN}: s3://{BUCKET}/{MANIFEST_KEY} does not exist"


def test_a_response_in_the_wrong_shape_names_its_file(evaluator):
    upload_run()
    put(f"{PREDICTIONS}street/street-3.jpg.out", b'{"predictions": []}')
    with pytest.raises(EvaluationFailed, match=r"street-3\.jpg\.out: missing 'prediction'"):
        handler.evaluate(event(), evaluator)


def test_a_request_outside_the_run_folders_is_refused(evaluator):
    upload_run()
    request = event() | {"validationManifestUri": f"s3://{BUCKET}/incoming/x.manifest"}
    with pytest.raises(EvaluationFailed, match="is not under"):
        handler.evaluate(request, evaluator)


def test_a_malformed_request_is_one_line(evaluator):
    with pytest.raises(EvaluationFailed, match="not an evaluation request: runName"):
        handler.evaluate({"predictionsUri": "s3://x/y/"}, evaluator)


@pytest.fixture
def configured(aws, monkeypatch):
    """The function as Lambda runs it, in the environment its stack gives it."""
    with deployed(monkeypatch, ENVIRONMENT, handler.evaluator):
        yield


def test_the_function_reads_its_environment_on_its_first_invocation(configured, lambda_context):
    s3().create_bucket(Bucket=BUCKET)
    upload_run()

    result = handler.main(event(), lambda_context)

    assert result["reportUri"] == f"s3://{BUCKET}/training/models/{RUN}/evaluation.json"


def test_a_function_without_its_bucket_says_so_in_one_line(configured, monkeypatch, lambda_context):
    monkeypatch.delenv("BUCKET")

    with pytest.raises(MisconfiguredFunction) as raised:
        handler.main(event(), lambda_context)

    assert str(raised.value) == "counting_core.contracts.evaluate_counts: BUCKET: missing"


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


def test_the_active_model_is_measured_on_the_same_images_side_by_side(evaluator):
    upload_run()
    # A champion that finds nothing: it counts 0 on every image. The four images hold 3, 1, 0
    # and 4 objects (8 in all), so at every threshold its errors are 3, 1, 0, 4: MAE 8 / 4 = 2,
    # WAPE 8 / 8 = 1, bias -8 / 4 = -2; thresholds tie and the lowest (0.05) is kept.
    upload_champion(b'{"prediction": []}')

    result = handler.evaluate(with_champion(), evaluator)

    # The new model's figures are unchanged (hand-checked above): MAE 0.25 <= 2, it is better.
    assert EvaluationSummary.model_validate(result).mae == 0.25
    # No train.manifest of the active model's run is here: every image is compared, and the
    # new model's figures on them are its own (MAE 0.25, WAPE 1 / 8).
    assert result["champion"] == {
        "modelName": CHAMPION_MODEL,
        "images": 4,
        "bestThreshold": 0.05,
        "mae": 2.0,
        "wape": 1.0,
        "bias": -2.0,
        "challengerMae": 0.25,
        "challengerWape": 0.125,
        "trainedOn": 0,
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


def champion_trained_on(*names: str) -> None:
    """The active model's run's train.manifest, listing these of the example's images."""
    lines = [
        line
        for line in (EXAMPLE / "validation.manifest").read_text().splitlines()
        if any(f"/{name}" in line for name in names)
    ]
    text = "\n".join(lines).replace("s3://my-counting-data/", f"s3://{BUCKET}/")
    put(f"training/manifests/{CHAMPION_MODEL}/train.manifest", text.encode())


def test_images_the_active_model_trained_on_are_left_out_of_the_comparison(evaluator):
    upload_run()
    upload_champion(b'{"prediction": []}')
    champion_trained_on("street-1.jpg", "street-5.jpg")

    result = handler.evaluate(with_champion(), evaluator)

    # Compared: street-2 (1 object) and street-3 (none). The active model finds nothing:
    # errors -1 and 0, MAE 0.5, WAPE 1 / 1, bias -0.5 at every threshold (the lowest kept).
    # The new model there: scores 0.88 and 0.27 on street-2, 0.18 on street-3; above 0.27
    # it counts 1 and 0, exactly: MAE 0 from the threshold 0.3 on.
    assert result["champion"] == {
        "modelName": CHAMPION_MODEL,
        "images": 2,
        "bestThreshold": 0.05,
        "mae": 0.5,
        "wape": 1.0,
        "bias": -0.5,
        "challengerMae": 0.0,
        "challengerWape": 0.0,
        "trainedOn": 2,
    }
    # The new model's own figures are on all four images, as before.
    assert EvaluationSummary.model_validate(result).mae == 0.25
    report = json.loads(read(f"training/models/{RUN}/evaluation.json"))
    assert (report["champion"]["trained_on"], report["champion"]["images"]) == (2, 2)


def test_an_active_model_that_trained_on_every_validation_image_is_not_compared(evaluator):
    upload_run()
    upload_champion(b'{"prediction": []}')
    champion_trained_on("street-1.jpg", "street-2.jpg", "street-3.jpg", "street-5.jpg")

    result = handler.evaluate(with_champion(), evaluator)

    assert result["champion"] is None
    report = json.loads(read(f"training/models/{RUN}/evaluation.json"))
    assert report["champion"] == {
        "model": CHAMPION_MODEL,
        "not_compared": "it trained on all 4 validation images of this run",
    }


def test_an_active_model_for_other_classes_is_not_compared(evaluator):
    # Counts are totals over every class: a model trained for cars alone would be scored
    # against labels that count trucks too. No answers of it are read (none were uploaded).
    upload_run()

    result = handler.evaluate(with_champion({"0": "car"}), evaluator)

    assert result["champion"] is None  # the gate then treats the run as a first model
    report = json.loads(read(f"training/models/{RUN}/evaluation.json"))
    assert report["champion"] == {
        "model": CHAMPION_MODEL,
        "not_compared": 'its class map {"0": "car"} is not this run\'s {"0": "car", "1": "truck"}',
    }


def test_without_an_active_model_the_champion_is_null(evaluator):
    upload_run()

    result = handler.evaluate(event() | {"champion": {}}, evaluator)

    assert result["champion"] is None
    assert "champion" not in json.loads(read(f"training/models/{RUN}/evaluation.json"))


def test_an_active_model_missing_an_answer_fails_the_evaluation(evaluator):
    upload_run()
    put(f"{CHAMPION_PREDICTIONS}street/street-1.jpg.out", b'{"prediction": []}')

    with pytest.raises(EvaluationFailed, match=r"no response for image .*street-2\.jpg"):
        handler.evaluate(with_champion(), evaluator)


def test_the_plot_draws_the_count_gate_the_stack_configures(aws):
    from counting_core.models import evaluation_plot as drawing

    s3().create_bucket(Bucket=BUCKET)
    gated = RunEvaluator(
        Environment.model_validate({**ENVIRONMENT, "MAX_COUNT_WAPE": "0.5"}), s3=s3()
    )
    upload_run()

    handler.evaluate(event(), gated)

    report = json.loads(read(f"training/models/{RUN}/evaluation.json"))
    plot = Image.open(io.BytesIO(read(f"training/models/{RUN}/evaluation.png"))).convert("RGB")
    # The WAPE scale runs from 0 to 1.05 x the largest of 0.1, every threshold's WAPE and the
    # gate, over the panel's 390 px (y 480 at the bottom); the gate's line is dashed across.
    top = 1.05 * max(0.1, 0.5, *(row["wape"] for row in report["per_threshold"]))
    gate_y = round(480 - 0.5 / top * 390)
    row = [plot.getpixel((x, gate_y)) for x in range(90, 500)]
    assert row.count(drawing.GATE_COLOUR) > 150


class MeetingS3:
    """moto's S3, except that each answer's GET waits until ``together`` GETs are under way:
    read one after another, the first one would wait for the others forever (here: fail)."""

    def __init__(self, together: int) -> None:
        self._s3 = s3()
        self._barrier = threading.Barrier(together, timeout=10)
        self.exceptions = self._s3.exceptions

    def __getattr__(self, name):
        return getattr(self._s3, name)

    def get_object(self, **request):
        if request["Key"].endswith(".out"):
            self._barrier.wait()
        return self._s3.get_object(**request)


def test_the_answers_are_read_at_once_not_one_after_another(aws):
    s3().create_bucket(Bucket=BUCKET)
    upload_run()
    # The example's four answers: all four GETs must be under way together.
    concurrent = RunEvaluator(Environment.model_validate(ENVIRONMENT), s3=MeetingS3(4))

    result = handler.evaluate(event(), concurrent)

    assert EvaluationSummary.model_validate(result).mae == 0.25  # the figures, as read singly
