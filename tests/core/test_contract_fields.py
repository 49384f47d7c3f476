"""Environments and payloads filled in from a function's contract, as the stacks fill them in."""

from __future__ import annotations

import pytest

from counting_core.contracts import bulk_counter, evaluate_counts, prepare_training_data
from counting_core.contracts.environment import MisconfiguredFunction
from counting_core.contracts.fields import ContractMismatch, by_alias


def token(value: object) -> bool:
    """Stands for ``aws_cdk.Token.is_unresolved``: CDK's string tokens look like this."""
    return isinstance(value, str) and value.startswith("${Token[")


BUCKET_TOKEN = "${Token[TOKEN.12]}"
PREPARE = {
    "service": "prepare-training-data",
    "metrics_namespace": "ObjectCounting",
    "bucket": BUCKET_TOKEN,
    "name_prefix": "object-counting-dev",
    "validation_fraction": 0.2,
    "split_seed": 42,
    "keep_images_without_boxes": True,
}


def test_variables_are_named_as_the_handler_reads_them_with_their_values_as_text():
    variables = prepare_training_data.Environment.variables(PREPARE, deferred=token)

    assert variables == {
        "POWERTOOLS_SERVICE_NAME": "prepare-training-data",
        "POWERTOOLS_METRICS_NAMESPACE": "ObjectCounting",
        "BUCKET": BUCKET_TOKEN,  # known at deploy time: passed through as it is
        "NAME_PREFIX": "object-counting-dev",
        "VALIDATION_FRACTION": "0.2",
        "SPLIT_SEED": "42",
        "KEEP_IMAGES_WITHOUT_BOXES": "true",
    }


def test_booleans_are_written_as_pydantic_reads_them_and_an_unset_option_is_left_out():
    values = {
        "service": "bulk-counting",
        "metrics_namespace": "ObjectCounting",
        "bucket": BUCKET_TOKEN,
        "results_table": "${Token[TOKEN.13]}",
        "score_threshold": None,
        "annotate": False,
        "max_payload_bytes": 20 * 1024 * 1024,
        "event_source": "object-counting-dev.counting",
        "tiling_mode": "off",
        "tile_side": None,
        "tile_overlap": 0.2,
        "tiling_auto_multiple": 3.0,
        "tile_merge": "merge",
        "whole_image_pass": True,
    }

    variables = bulk_counter.Environment.variables(values, deferred=token)

    assert variables["ANNOTATE"] == "false"
    assert variables["MAX_PAYLOAD_BYTES"] == "20971520"  # 20 x 1,048,576
    assert "SCORE_THRESHOLD" not in variables
    assert (variables["WHOLE_IMAGE_PASS"], "TILE_SIDE" in variables) == ("true", False)
    deployed = variables | {"DATA_BUCKET": "b-1", "RESULTS_TABLE": "Results"}
    assert bulk_counter.Environment.read(deployed).annotate is False


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"bukcet": "x"},
            "counting_core.contracts.prepare_training_data.Environment has no field 'bukcet'",
        ),
        (
            {"split_seed": None},
            "counting_core.contracts.prepare_training_data.Environment.split_seed: Input "
            "should be a valid integer (got None)",
        ),
        (
            {"validation_fraction": 1.5},
            "counting_core.contracts.prepare_training_data.Environment.validation_fraction: "
            "Input should be less than 1 (got 1.5)",
        ),
        (
            {"bucket": "Data_Bucket"},
            "counting_core.contracts.prepare_training_data.Environment.bucket: String should "
            "match pattern",
        ),
    ],
    ids=["misspelt", "not a number", "out of range", "not a bucket name"],
)
def test_a_value_known_at_synth_is_checked_against_its_field(change, problem):
    with pytest.raises(ContractMismatch) as raised:
        prepare_training_data.Environment.variables(PREPARE | change, deferred=token)

    assert str(raised.value).startswith(problem)


def test_a_required_field_left_out_is_named():
    values = {name: value for name, value in PREPARE.items() if name != "name_prefix"}

    with pytest.raises(ContractMismatch) as raised:
        prepare_training_data.Environment.variables(values, deferred=token)

    assert str(raised.value) == (
        "counting_core.contracts.prepare_training_data.Environment.name_prefix is required"
    )


def test_a_payload_is_keyed_as_the_function_reads_it_in_the_order_given():
    payload = by_alias(
        evaluate_counts.EvaluateRequest,
        {
            "run_name": "${Token[RunName.1]}",
            "validation_manifest_uri": "${Token[Manifest.2]}",
            "predictions_uri": "${Token[Predictions.3]}",
            "champion": "${Token[Champion.4]}",
        },
        deferred=token,
    )

    assert list(payload) == ["runName", "validationManifestUri", "predictionsUri", "champion"]


def test_a_request_names_its_action():
    with pytest.raises(ContractMismatch) as raised:
        by_alias(
            bulk_counter.Summarize,
            {
                "action": "summarise",
                "run": "${Token[Run.1]}",
                "prefix": "${Token[Prefix.2]}",
                "model_name": "${Token[Model.3]}",
                "transform": "${Token[Transform.4]}",
            },
            deferred=token,
        )

    assert str(raised.value) == (
        "counting_core.contracts.bulk_counter.Summarize.action: Input should be 'summarize' "
        "(got 'summarise')"
    )


@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        ({"BUCKET": "Object_Counting"}, "BUCKET: String should match pattern"),
        ({"VALIDATION_FRACTION": "0"}, "VALIDATION_FRACTION: Input should be greater than 0"),
        ({"SPLIT_SEED": "forty-two"}, "SPLIT_SEED: Input should be a valid integer"),
        ({"NAME_PREFIX": None}, "NAME_PREFIX: missing"),
    ],
    ids=["bucket name in capitals", "nothing to validate on", "seed not a number", "no prefix"],
)
def test_a_function_refuses_an_environment_it_could_not_run_with_in_one_line(variables, problem):
    # The Prepare function's environment as its stack sets it, with one value broken.
    environment = {
        "POWERTOOLS_SERVICE_NAME": "prepare-training-data",
        "POWERTOOLS_METRICS_NAMESPACE": "ObjectCounting",
        "BUCKET": "object-counting-dev-data-123456789012-us-east-1",
        "NAME_PREFIX": "object-counting-dev",
        "VALIDATION_FRACTION": "0.2",
        "SPLIT_SEED": "42",
        "KEEP_IMAGES_WITHOUT_BOXES": "true",
        "AWS_REGION": "us-east-1",  # Lambda's own variables are read past
    } | variables

    with pytest.raises(MisconfiguredFunction) as raised:
        prepare_training_data.Environment.read(
            {name: value for name, value in environment.items() if value is not None}
        )

    assert str(raised.value).startswith(f"counting_core.contracts.prepare_training_data: {problem}")
    assert "\n" not in str(raised.value)
