"""Training instance types: those SageMaker lists, in each algorithm's families, and the
volume key only where the instance has no NVMe storage of its own."""

from __future__ import annotations

import botocore.session
import pytest

from stacks.config import ConfigError, load_config, training_instance_types
from tests.conftest import cdk_context
from tests.contracts.conftest import synthesized
from tests.contracts.state_machines import definitions, states
from tests.infra.configurations import TRAINING_FAMILIES

# The built-in algorithm trains on P2, P3, G4dn and G5; torchvision on G4dn to P5 (not P2's
# K80s). G4dn, G5, G6, G6e, P4d(e) and P5(e/en) instances have local NVMe storage, for which
# CreateTrainingJob refuses a VolumeKmsKeyId; P2 and P3 (but p3dn) have none.
# https://docs.aws.amazon.com/sagemaker/latest/dg/object-detection.html
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ResourceConfig.html
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/InstanceStorage.html
WITH_INSTANCE_STORE = {"g4dn", "g5", "g6", "g6e", "p4d", "p4de", "p5", "p5e", "p5en"}


def training_job(configuration: str) -> dict:
    templates = synthesized(configuration)
    ((_, definition),) = [
        (machine, definition)
        for machine, definition in definitions(templates)
        if machine.split("/")[0].endswith("-training")
    ]
    (train,) = [state for name, state in states(definition) if name == "Train"]
    return train["Parameters"]


def training_role_key_actions(configuration: str) -> set[str]:
    templates = synthesized(configuration)
    stack = next(name for name in templates.stacks() if name.endswith("-training"))
    actions = set()
    for policy in templates.resources(stack, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Sid") == "UseTheDataKey":
                actions.update(statement["Action"])
    return actions


@pytest.mark.parametrize(("trained", "configuration"), TRAINING_FAMILIES.items())
@pytest.mark.synth
def test_each_family_trains_with_a_volume_key_only_where_it_may(trained, configuration):
    algorithm, family = trained
    job = training_job(configuration)
    resources = job["ResourceConfig"]

    assert ("EnableNetworkIsolation" in job) == (algorithm == "torchvision")

    assert resources["InstanceType"].split(".")[1] == family
    assert ("VolumeKmsKeyId" in resources) == (family not in WITH_INSTANCE_STORE)
    # No volume key, no grant on it for SageMaker to encrypt the volume with.
    assert ("kms:CreateGrant" in training_role_key_actions(configuration)) == (
        family not in WITH_INSTANCE_STORE
    )


def test_both_algorithms_train_with_and_without_instance_storage():
    synthesized_families = {
        (algorithm, family in WITH_INSTANCE_STORE) for algorithm, family in TRAINING_FAMILIES
    }
    assert synthesized_families == {
        ("torchvision", True),
        ("torchvision", False),
        ("builtin", True),
        ("builtin", False),
    }


def test_the_types_are_sagemakers_own():
    model = botocore.session.get_session().get_service_model("sagemaker")
    listed = set(model.shape_for("TrainingInstanceType").enum)
    builtin = set(training_instance_types("builtin"))
    torchvision = set(training_instance_types("torchvision"))

    assert builtin <= listed
    assert torchvision <= listed
    assert {"ml.p2.xlarge", "ml.p3.2xlarge", "ml.g4dn.xlarge", "ml.g5.2xlarge"} <= builtin
    assert {"ml.p3.xlarge", "ml.p4d.24xlarge", "ml.m5.xlarge", "ml.g6.xlarge"}.isdisjoint(builtin)
    assert {
        "ml.g4dn.xlarge",
        "ml.g5.xlarge",
        "ml.g6.xlarge",
        "ml.g6e.xlarge",
        "ml.p3.2xlarge",
        "ml.p4d.24xlarge",
        "ml.p5.48xlarge",
    } <= torchvision
    assert {"ml.p2.xlarge", "ml.p3dn.24xlarge", "ml.m5.xlarge", "ml.p6-b200.48xlarge"}.isdisjoint(
        torchvision
    )
    # Every family with NVMe storage torchvision trains on is one the volume-key rule knows.
    assert {type_.split(".")[1] for type_ in torchvision} - {"p3"} <= WITH_INSTANCE_STORE


@pytest.mark.parametrize(
    ("algorithm", "instance_type", "listed"),
    [
        ("builtin", "ml.p3.xlarge", "ml.g5.2xlarge"),
        ("builtin", "ml.p4d.24xlarge", "ml.g5.2xlarge"),
        ("builtin", "ml.c5.xlarge", "ml.g5.2xlarge"),
        ("torchvision", "ml.p2.xlarge", "ml.g6e.xlarge"),
        ("torchvision", "ml.c5.xlarge", "ml.g6e.xlarge"),
    ],
)
def test_a_type_the_algorithm_cannot_train_on_is_refused_with_one_line(
    algorithm, instance_type, listed
):
    with pytest.raises(ConfigError) as refused:
        load_config(
            cdk_context(
                **{
                    "counting.training.algorithm": algorithm,
                    "counting.training.instance_type": instance_type,
                }
            )
        )

    (line,) = str(refused.value).splitlines()
    assert line.startswith(
        f"training.instance_type: '{instance_type}' is not a SageMaker training instance type "
        f"the {algorithm} algorithm trains on: "
    )
    assert listed in line


@pytest.mark.parametrize(
    ("algorithm", "expected"), [("torchvision", "ml.g4dn.xlarge"), ("builtin", "ml.p3.2xlarge")]
)
def test_each_algorithm_has_its_own_default_instance(algorithm, expected):
    config = load_config(cdk_context(**{"counting.training.algorithm": algorithm}))

    assert config.training.instance_type == expected
