"""Training instance types: those SageMaker lists, in the algorithm's families, and the
volume key only where the instance has no NVMe storage of its own."""

from __future__ import annotations

import botocore.session
import pytest

from stacks.config import ConfigError, load_config, training_instance_types
from tests.conftest import cdk_context
from tests.contracts.conftest import synthesized
from tests.contracts.state_machines import definitions, states
from tests.infra.configurations import TRAINING_FAMILIES

# The algorithm trains on P2, P3, G4dn and G5; of those, G4dn and G5 instances have local
# NVMe storage, for which CreateTrainingJob refuses a VolumeKmsKeyId.
# https://docs.aws.amazon.com/sagemaker/latest/dg/object-detection.html
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ResourceConfig.html
WITH_INSTANCE_STORE = {"g4dn", "g5"}


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


@pytest.mark.parametrize(("family", "configuration"), TRAINING_FAMILIES.items())
@pytest.mark.synth
def test_each_family_trains_with_a_volume_key_only_where_it_may(family, configuration):
    resources = training_job(configuration)["ResourceConfig"]

    assert resources["InstanceType"].split(".")[1] == family
    assert ("VolumeKmsKeyId" in resources) == (family not in WITH_INSTANCE_STORE)
    # No volume key, no grant on it for SageMaker to encrypt the volume with.
    assert ("kms:CreateGrant" in training_role_key_actions(configuration)) == (
        family not in WITH_INSTANCE_STORE
    )


def test_every_family_the_algorithm_supports_is_synthesized():
    assert set(TRAINING_FAMILIES) == {"p2", "p3", "g4dn", "g5"}


def test_the_types_are_sagemakers_own():
    model = botocore.session.get_session().get_service_model("sagemaker")
    listed = set(model.shape_for("TrainingInstanceType").enum)
    allowed = set(training_instance_types())

    assert allowed <= listed
    assert {"ml.p2.xlarge", "ml.p3.2xlarge", "ml.g4dn.xlarge", "ml.g5.2xlarge"} <= allowed
    assert {"ml.p3.xlarge", "ml.p4d.24xlarge", "ml.m5.xlarge", "ml.g6.xlarge"}.isdisjoint(allowed)


@pytest.mark.parametrize("instance_type", ["ml.p3.xlarge", "ml.p4d.24xlarge", "ml.c5.xlarge"])
def test_a_type_the_algorithm_cannot_train_on_is_refused_with_one_line(instance_type):
    with pytest.raises(ConfigError) as refused:
        load_config(cdk_context(**{"counting.training.instance_type": instance_type}))

    (line,) = str(refused.value).splitlines()
    assert line.startswith(f"training.instance_type: '{instance_type}' is not a SageMaker")
    assert "ml.g5.2xlarge" in line
