"""The configuration: safe defaults, layered overrides, one line per bad value."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from stacks.config import (
    AppConfig,
    ConfigError,
    configuration_page,
    load_config,
    settings_table,
)
from tests.conftest import ROOT, cdk_context


def test_defaults_are_safe_and_environment_agnostic():
    config = load_config(cdk_context())
    assert config.stage == "dev"
    assert config.prefix == "object-counting-dev"
    assert config.account is None
    assert config.region is None
    # cdk.json makes dev a stage that `make destroy` removes; prod keeps the default, retain.
    assert config.storage.removal_policy == "destroy"
    assert load_config(cdk_context(stage="prod")).storage.removal_policy == "retain"


def test_stage_settings_file_and_dotted_values_override_in_that_order(tmp_path):
    settings_file = tmp_path / "mine.json"
    settings_file.write_text(json.dumps({"storage": {"noncurrent_version_days": 10}}))
    context = cdk_context(stage="prod", config=str(settings_file))
    context["counting"]["stages"]["prod"] = {"storage": {"noncurrent_version_days": 90}}
    context["counting.storage.removal_policy"] = "destroy"
    context["counting.storage.incomplete_upload_days"] = "3"

    config = load_config(context)

    assert config.stage == "prod"
    assert config.storage.noncurrent_version_days == 10
    assert config.storage.removal_policy == "destroy"
    assert config.storage.incomplete_upload_days == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"counting.storage.removal_policy": "keep"},
            "storage.removal_policy: Input should be 'retain' or 'destroy' (got 'keep')",
        ),
        ({"counting.account": "12345"}, "account: '12345' is not a 12-digit AWS account id"),
        (
            {"counting.region": "Europe"},
            "region: 'Europe' is not an AWS region name (like eu-west-1)",
        ),
        ({"counting.storage.colour": "blue"}, "storage.colour: unknown setting"),
        (
            {"counting.storage.noncurrent_version_days": "0"},
            "storage.noncurrent_version_days: Input should be greater than or equal to 1 (got 0)",
        ),
        (
            {"counting.training.max_wait_hours": "2"},
            "training.max_wait_hours: 2 is below max_runtime_hours (24); spot training waits",
        ),
        (
            {
                "counting.training.algorithm": "builtin",
                "counting.training.hyperparameters": '{"label_width": "500"}',
            },
            "training.hyperparameters: label_width come from the data of each run",
        ),
        (
            {"counting.training.hyperparameters": '{"label_attribute": "cars", "seed": "1"}'},
            "training.hyperparameters: label_attribute come from the data of each run or other",
        ),
        (
            {"counting.training.hyperparameters": '{"sagemaker_program": "mine.py"}'},
            "training.hyperparameters: sagemaker_program come from the data of each run or other",
        ),
        (
            {"counting.training.hyperparameters": '{"image_size": "large"}'},
            "training.hyperparameters: image_size must be a whole number of pixels, got 'large'",
        ),
        (
            {"counting.training.algorithm": "mxnet"},
            "training.algorithm: Input should be 'torchvision' or 'builtin' (got 'mxnet')",
        ),
        (
            {"counting.training.detector": "yolo"},
            "training.detector: 'yolo' is not one of fasterrcnn_mobilenet_v3_large_fpn, ",
        ),
        (
            # Another detector, the default detector's weights: caught before a GPU run.
            {"counting.training.detector": "ssdlite320_mobilenet_v3_large"},
            "training.pretrained_weights: 'fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth' is "
            "not a weights file of ssdlite320_mobilenet_v3_large",
        ),
        (
            {"counting.training.pretrained_weights": "s3://elsewhere/w.pth"},
            "training.pretrained_weights: 's3://elsewhere/w.pth' is not a weights file of",
        ),
        (
            {"counting.training.image_uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/d:1"},
            "training.image_uri: applies to the built-in algorithm only",
        ),
        (
            {"counting.training.force_deploy": ""},
            "training.force_deploy: String should have at least 1 character",
        ),
        (
            {"counting.inference.provisioned_concurrency": "7"},
            "inference.provisioned_concurrency: 7 exceeds max_concurrency (6)",
        ),
        (
            {
                "counting.training.algorithm": "builtin",
                "counting.training.hyperparameters": '{"image_shape": "big"}',
            },
            "training.hyperparameters: image_shape must be a whole number of pixels, got 'big'",
        ),
        (
            {"counting.training.instance_type": "ml.p3.banana"},
            "training.instance_type: 'ml.p3.banana' is not a SageMaker training instance type",
        ),
        (
            {"stage": "integration-test", "counting": {"stages": {"integration-test": {}}}},
            "project and stage: 'object-counting-integration-test' is 32 characters; at most 30",
        ),
        ({"stage": "qa"}, "stage: 'qa' is not one of the stages in cdk.json (dev, prod)"),
        (
            {"counting.workforce.existing_user_pool_id": "eu-west-1_AbCdEf123"},
            "workforce.existing_user_pool_id and workforce.existing_app_client_id go together",
        ),
        (
            {"counting.workforce.existing_app_client_id": "1example23456789abcdefghij"},
            "workforce.existing_user_pool_id and workforce.existing_app_client_id go together",
        ),
        ({"config": "/nonexistent.json"}, "config: cannot read /nonexistent.json"),
        (
            {"counting.counter.tiling.mode": "always"},
            "counter.tiling.mode: Input should be 'off', 'on' or 'auto' (got 'always')",
        ),
        (
            {"counting.counter.tiling.overlap": "0.7"},
            "counter.tiling.overlap: Input should be less than or equal to 0.5 (got 0.7)",
        ),
        (
            {"counting.counter.tiling.overlap": "0"},
            "counter.tiling.overlap: Input should be greater than 0 (got 0)",
        ),
        (
            {"counting.counter.tiling.tile_side": "16"},
            "counter.tiling.tile_side: Input should be greater than or equal to 32 (got 16)",
        ),
        (
            {"counting.counter.tiling.auto_multiple": "0.5"},
            "counter.tiling.auto_multiple: Input should be greater than or equal to 1 (got 0.5)",
        ),
        (
            {"counting.counter.tiling.merge": "wbf"},
            "counter.tiling.merge: Input should be 'merge' or 'nms' (got 'wbf')",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_the_field(overrides, message):
    with pytest.raises(ConfigError) as caught:
        load_config(cdk_context(**overrides))
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_synth_with_a_bad_value_exits_non_zero_with_one_line_and_no_traceback():
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env={
            "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin",
            "CDK_CONTEXT_JSON": json.dumps(cdk_context(**{"counting.account": "abc"})),
            # Synth fails on the bad value before it writes anything there.
            "CDK_OUTDIR": "/tmp/never-written",  # noqa: S108
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "invalid config: account: 'abc' is not a 12-digit AWS account id"
    )
    assert "Traceback" not in result.stderr


def test_tiling_settings_are_the_policy_the_tiler_takes():
    config = load_config(
        cdk_context(**{"counting.counter.tiling": '{"mode": "auto", "overlap": 0.25}'})
    )
    policy = config.counter.tiling.policy
    assert (policy.mode, policy.overlap, policy.tile_side) == ("auto", 0.25, None)
    assert (policy.auto_multiple, policy.merge, policy.whole_image_pass) == (3.0, "merge", True)


def test_configuration_page_documents_every_setting_as_generated():
    page = (ROOT / "docs" / "configuration.md").read_text()

    # same code: the page is generated; this only checks that it was regenerated.
    assert page == configuration_page(), "docs/configuration.md is out of date: run make docs"
    undocumented = [row for row in settings_table(AppConfig) if row.endswith("|  |")]
    assert not undocumented, "settings without a description in stacks/config.py"


def test_hyperparameters_given_in_part_keep_the_other_defaults():
    config = load_config(
        cdk_context(
            **{
                "counting.training.algorithm": "builtin",
                "counting.training.hyperparameters": '{"epochs": "5"}',
            }
        )
    )

    # The built-in algorithm's defaults (docs/configuration.md, training.hyperparameters),
    # epochs replaced.
    assert config.training.hyperparameters == {
        "base_network": "resnet-50",
        "use_pretrained_model": "1",
        "image_shape": "512",
        "mini_batch_size": "8",
        "epochs": "5",
        "learning_rate": "0.001",
        "optimizer": "sgd",
        "momentum": "0.9",
        "weight_decay": "0.0005",
    }
    assert config.training.hyperparameters["base_network"] == "resnet-50"


def test_torchvision_is_the_default_with_the_contracts_hyperparameters():
    config = load_config(
        cdk_context(**{"counting.training.hyperparameters": '{"learning_rate": "0.005"}'})
    )

    training = config.training
    assert training.algorithm == "torchvision"
    assert training.detector == "fasterrcnn_mobilenet_v3_large_fpn"
    assert training.pretrained_weights == "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth"
    assert training.force_deploy is None
    assert training.hyperparameters == {
        "image_size": "512",
        "epochs": "30",
        "batch_size": "8",
        "max_detections": "1000",
        "seed": "42",
        "learning_rate": "0.005",
    }
    assert training.image_shape == 512


# torchvision's published file for SSDlite 320 (its model builder's name, then _coco-<hash>).
SSDLITE_WEIGHTS = "ssdlite320_mobilenet_v3_large_coco-a79551df.pth"


def test_another_detector_takes_its_own_weights_or_none():
    ssdlite = load_config(
        cdk_context(
            **{
                "counting.training.detector": "ssdlite320_mobilenet_v3_large",
                "counting.training.pretrained_weights": SSDLITE_WEIGHTS,
            }
        )
    )
    scratch = load_config(
        cdk_context(
            **{
                "counting.training.detector": "fasterrcnn_mobilenet_v3_large_320_fpn",
                "counting.training.pretrained_weights": "none",
            }
        )
    )

    assert ssdlite.training.uses_pretrained_weights
    assert not scratch.training.uses_pretrained_weights


@pytest.mark.parametrize("instance_type", ["ml.g4dn.xlarge", "ml.p3.2xlarge", "ml.trn1.2xlarge"])
def test_the_evaluation_runs_on_a_cpu_without_local_storage(instance_type):
    # g4dn and trn1 have NVMe instance storage: CreateTransformJob would refuse
    # VolumeKmsKeyId; p3 is a GPU the evaluation does not need.
    with pytest.raises(ConfigError) as raised:
        load_config(cdk_context(**{"counting.training.evaluation_instance_type": instance_type}))
    assert str(raised.value) == (
        f"training.evaluation_instance_type: '{instance_type}' is not a CPU Batch Transform "
        "instance type without local storage (ml.c4, ml.c5, ml.c6i, ml.c7i, ml.m4, ml.m5, "
        "ml.m6i, ml.m7i, ml.r6i, ml.r7i)"
    )


@pytest.mark.parametrize(
    ("setting", "instance_type", "suggested"),
    [
        # m5d (local NVMe) and m5.3xlarge are EC2 sizes Batch Transform does not offer.
        ("training.evaluation_instance_type", "ml.m5d.large", "ml.m5.large"),
        ("bulk.instance_type", "ml.m5.3xlarge", "ml.m5.xlarge"),
    ],
)
def test_an_instance_type_batch_transform_does_not_offer_is_refused(
    setting, instance_type, suggested
):
    with pytest.raises(ConfigError) as raised:
        load_config(cdk_context(**{f"counting.{setting}": instance_type}))

    message = str(raised.value)
    assert message.startswith(
        f"{setting}: '{instance_type}' is not an instance type Batch Transform offers "
        "(botocore's TransformInstanceType); did you mean "
    )
    assert suggested in message


def test_every_accepted_evaluation_instance_type_is_one_batch_transform_offers():
    import botocore.session

    from stacks.config import CpuTransformInstanceType

    offered = (
        botocore.session.get_session()
        .get_service_model("sagemaker")
        .shape_for("TransformInstanceType")
        .enum
    )
    accepted = [name for name in offered if _accepts(CpuTransformInstanceType, name)]
    assert "ml.m5.xlarge" in accepted  # the default
    assert len(accepted) >= 40
    assert not [name for name in accepted if name.startswith(("ml.g", "ml.p", "ml.inf", "ml.trn"))]


def _accepts(annotation, value: str) -> bool:
    from pydantic import TypeAdapter, ValidationError

    try:
        TypeAdapter(annotation).validate_python(value)
    except ValidationError:
        return False
    return True


def test_the_count_gate_is_on_unless_switched_off():
    assert load_config(cdk_context()).training.max_count_wape == 0.25
    config = load_config(cdk_context(**{"counting.training.max_count_wape": "null"}))
    assert config.training.max_count_wape is None
    config = load_config(cdk_context(**{"counting.training.max_count_wape": "0.1"}))
    assert config.training.max_count_wape == 0.1
    with pytest.raises(ConfigError, match=r"training\.max_count_wape: Input should be greater"):
        load_config(cdk_context(**{"counting.training.max_count_wape": "-1"}))


@pytest.mark.parametrize(
    ("stages", "chosen", "message"),
    [
        (
            {"dev": {}, "dev-eu": {}},
            "dev",
            "stages: 'object-counting-dev-eu' starts with 'object-counting-dev' and a hyphen, "
            "so names and permissions scoped to object-counting-dev-* would include its "
            "resources; rename a stage",
        ),
        (
            # The bulk runs' model copies are object-counting-dev-bulk-<id>.
            {"dev": {}, "dev-bulk": {}},
            "dev-bulk",
            "stages: 'object-counting-dev-bulk' starts with 'object-counting-dev' and a "
            "hyphen, so names and permissions scoped to object-counting-dev-* would include "
            "its resources; rename a stage",
        ),
        (
            {"dev": {}, "eu": {"project": "object-counting-dev"}},
            "dev",
            "stages: 'object-counting-dev-eu' starts with 'object-counting-dev' and a hyphen, "
            "so names and permissions scoped to object-counting-dev-* would include its "
            "resources; rename a stage",
        ),
    ],
    ids=["stage extends stage", "a stage named like a bulk run", "through a project"],
)
def test_a_stage_whose_names_would_fall_inside_another_stages_is_refused(stages, chosen, message):
    context = cdk_context(stage=chosen)
    context["counting"]["stages"] = stages

    with pytest.raises(ConfigError) as refused:
        load_config(context)

    assert str(refused.value) == message


def test_stages_that_only_share_letters_are_fine():
    context = cdk_context(stage="dev")
    context["counting"]["stages"] = {"dev": {}, "deveu": {}, "prod": {}}

    assert load_config(context).prefix == "object-counting-dev"
