"""The active-model record: what the training state machine writes, what the counter reads."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from counting_core.models.model_record import ActiveModel, ScoreThreshold, score_threshold

# As the state machine's DescribeActiveModel state builds it, with the run's count evaluation.
WRITTEN = {
    "endpoint_name": "object-counting-dev-counter",
    "endpoint_config_name": "object-counting-dev-20261126-173000-a1b2c3",
    "model_name": "object-counting-dev-20261126-173000-a1b2c3",
    "training_job_name": "object-counting-dev-20261126-173000-a1b2c3",
    "validation_map": 0.73,
    "class_map": {"0": "car", "1": "truck"},
    "label_attribute": "vehicles",
    "best_threshold": 0.35,
    "count_mae": 0.25,
    "count_wape": 0.125,
    "count_bias": -0.25,
    "evaluation_uri": "s3://bucket/training/models/run/evaluation.json",
    "deployed_at": "2026-11-26T18:02:11.512Z",
    "image_shape": 512,
    "algorithm": "torchvision",
    "detector": "fasterrcnn_mobilenet_v3_large_fpn",
    "champion": None,  # the first model
    "forced_deploy": None,
    "tiling": None,  # counter.tiling off: not measured
}


def test_reads_the_record_the_state_machine_writes():
    record = ActiveModel.model_validate_json(json.dumps(WRITTEN))

    assert record.model_dump() == WRITTEN


def test_a_record_written_before_image_shape_still_reads():
    older = {name: value for name, value in WRITTEN.items() if name != "image_shape"}

    assert ActiveModel.model_validate(older).image_shape is None


def test_a_record_written_before_the_algorithm_was_recorded_is_the_builtin_ones():
    older = {
        name: value for name, value in WRITTEN.items() if name not in ("algorithm", "detector")
    }

    record = ActiveModel.model_validate(older)

    assert (record.algorithm, record.detector) == ("builtin", None)


def test_a_record_says_what_it_replaced_and_why_it_was_forced():
    # As the state machine writes it: the evaluation's champion figures in camelCase.
    champion = {
        "modelName": "object-counting-dev-20261101-090000-0f0f0f",
        "images": 4,
        "bestThreshold": 0.05,
        "mae": 2.0,
        "wape": 1.0,
        "bias": -2.0,
    }
    written = {**WRITTEN, "champion": champion, "forced_deploy": "rollback of a bad labeling"}

    record = ActiveModel.model_validate_json(json.dumps(written))

    assert record.champion is not None
    assert (record.champion.model_name, record.champion.mae) == (champion["modelName"], 2.0)
    assert record.forced_deploy == "rollback of a bad labeling"


def test_a_record_from_a_newer_writer_still_reads():
    record = ActiveModel.model_validate({**WRITTEN, "data_report": "s3://bucket/report.json"})

    assert record.endpoint_name == WRITTEN["endpoint_name"]


@pytest.mark.parametrize(
    "change",
    [
        {"endpoint_name": ""},
        {"model_name": None},
        {"validation_map": 1.2},
        {"validation_map": -0.1},
        {"class_map": ["car"]},
        {"best_threshold": 1.5},
        {"count_wape": -0.1},
    ],
)
def test_a_broken_record_is_refused(change):
    with pytest.raises(ValidationError):
        ActiveModel.model_validate({**WRITTEN, **change})


def test_names_are_required_and_the_rest_optional():
    record = ActiveModel(endpoint_name="e", endpoint_config_name="c", model_name="m")

    assert (record.validation_map, record.class_map, record.training_job_name) == (None, {}, "")
    with pytest.raises(ValidationError):
        ActiveModel.model_validate({"endpoint_name": "e", "model_name": "m"})


BEFORE_EVALUATION = ActiveModel(endpoint_name="e", endpoint_config_name="c", model_name="m")
CALIBRATED = BEFORE_EVALUATION.model_copy(update={"best_threshold": 0.35})


@pytest.mark.parametrize(
    ("model", "configured", "expected"),
    [
        (CALIBRATED, 0.5, ScoreThreshold(0.5, "configured")),  # the configuration pins it
        (CALIBRATED, 0.0, ScoreThreshold(0.0, "configured")),  # 0 is a setting, not "unset"
        (CALIBRATED, None, ScoreThreshold(0.35, "calibrated")),
        (BEFORE_EVALUATION, None, ScoreThreshold(0.2, "default")),  # a record from before
        (None, None, ScoreThreshold(0.2, "default")),  # no record at all (the CLI)
    ],
)
def test_which_threshold_counts(model, configured, expected):
    assert score_threshold(model, configured) == expected


# As the record holds the evaluation's tiling figures: camelCase keys.
TILING_MEASURED = {
    "tile": True,
    "images": 40,
    "bestThreshold": 0.45,
    "mae": 1.5,
    "wape": 0.05,
    "untiledMae": 12.25,
}
MEASURED = CALIBRATED.model_copy(
    update={"tiling": ActiveModel.model_validate({**WRITTEN, "tiling": TILING_MEASURED}).tiling}
)


@pytest.mark.parametrize(
    ("model", "configured", "tiled", "expected"),
    [
        (MEASURED, None, True, ScoreThreshold(0.45, "calibrated")),  # on tiled counts
        (MEASURED, None, False, ScoreThreshold(0.35, "calibrated")),  # on whole ones
        (MEASURED, 0.5, True, ScoreThreshold(0.5, "configured")),
        # Tiled, but the run did not measure tiles: the whole counts' threshold.
        (CALIBRATED, None, True, ScoreThreshold(0.35, "calibrated")),
    ],
)
def test_a_tiled_count_takes_the_threshold_calibrated_on_tiles(model, configured, tiled, expected):
    assert score_threshold(model, configured, tiled=tiled) == expected


def test_the_tiling_choice_round_trips_in_camel_case_and_is_optional():
    record = ActiveModel.model_validate({**WRITTEN, "tiling": TILING_MEASURED})
    assert record.tiling_measured is True
    assert json.loads(record.model_dump_json())["tiling"] == TILING_MEASURED
    assert ActiveModel.model_validate(WRITTEN).tiling_measured is None
