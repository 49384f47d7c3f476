"""Every pin in constraints.txt, the layers built from those pins, the SDK table copied from one."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

from stacks.components.counter import PILLOW
from stacks.components.python_function import POWERTOOLS_LAYER_PARAMETER, POWERTOOLS_VERSION
from stacks.components.training.image import TABLE
from stacks.pins import normalized, pinned_versions
from tests.conftest import ROOT

REQUIREMENTS = ("requirements.txt", "requirements-dev.txt", "requirements-runtime.txt")
SDK_TABLE = "sagemaker/core/image_uri_config/object-detection.json"


def requirement_names(filename: str) -> list[str]:
    names = []
    for line in (ROOT / filename).read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement and not requirement.startswith("-"):
            names.append(re.split(r"[\[=<>~!; ]", requirement, maxsplit=1)[0])
    return names


@pytest.mark.parametrize("filename", REQUIREMENTS)
def test_requirements_name_packages_and_constraints_pin_them(filename):
    names = requirement_names(filename)
    assert names
    for name in names:
        assert normalized(name) in pinned_versions(), f"{name} has no pin in constraints.txt"
    # Versions live in constraints.txt only.
    assert "==" not in (ROOT / filename).read_text()


def test_the_pins_are_what_this_environment_runs():
    installed = {normalized(d.metadata["Name"]): d.version for d in metadata.distributions()}
    differing = {
        name: (version, installed.get(name))
        for name, version in pinned_versions().items()
        if installed.get(name) != version
    }
    assert differing == {}, "constraints.txt is out of date: (pinned, installed)"


def test_the_layers_carry_the_releases_the_handler_tests_run_against():
    assert f"pillow=={metadata.version('pillow')}" == PILLOW
    assert metadata.version("aws-lambda-powertools") == POWERTOOLS_VERSION
    assert POWERTOOLS_LAYER_PARAMETER.endswith(f"/python3.13/{POWERTOOLS_VERSION}")


def test_the_synth_environment_needs_no_sagemaker_sdk():
    assert not [n for n in requirement_names("requirements.txt") if "sagemaker" in n]


def test_the_image_table_is_the_pinned_sdks_copy():
    sdk_copy = Path(str(metadata.distribution("sagemaker-core").locate_file(SDK_TABLE)))
    # On a mismatch after an SDK update: cp "$(that path)" stacks/components/training/.
    assert TABLE.read_bytes() == sdk_copy.read_bytes(), f"refresh {TABLE.name} from {sdk_copy}"
