"""Every pin in constraints.txt, the layers built from those pins, the SDK table copied from one."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import grimp
import pytest
from packaging.requirements import Requirement

from stacks.components.algorithms.images import PYTORCH_TABLE, TABLE
from stacks.components.python_function import POWERTOOLS_LAYER_PARAMETER, POWERTOOLS_VERSION
from stacks.pins import IMAGING, IMAGING_LICENCES, PILLOW, normalized, pinned_versions
from tests.conftest import ROOT

REQUIREMENTS = (
    "requirements.txt",
    "requirements-dev.txt",
    "requirements-runtime.txt",
    "requirements-detector.txt",
)
SDK_TABLES = "sagemaker/core/image_uri_config/"


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
    # must agree: the layers' pins and the releases installed here
    assert f"pillow=={metadata.version('pillow')}" == PILLOW
    # must agree: the imaging layer's pins and the releases installed here
    assert (
        PILLOW,
        f"cvttf-NotoSansCJK-Regular=={metadata.version('cvttf-NotoSansCJK-Regular')}",
    ) == IMAGING
    # must agree: as above, for Powertools
    assert metadata.version("aws-lambda-powertools") == POWERTOOLS_VERSION
    assert POWERTOOLS_LAYER_PARAMETER.endswith(f"/python3.13/{POWERTOOLS_VERSION}")


def test_the_synth_environment_needs_no_sagemaker_sdk():
    assert not [n for n in requirement_names("requirements.txt") if "sagemaker" in n]


def test_synth_packs_the_detector_without_torch():
    # The stack builds the torchvision job's source tarball at synth (detector.source, standard
    # library only); torch is for `make detector`, never for `make synth`.
    assert not [n for n in requirement_names("requirements.txt") if "torch" in n]
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, stacks.components.training.pipeline; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert loaded.stdout.strip() == "[]"


@pytest.mark.parametrize("table", [TABLE, PYTORCH_TABLE], ids=lambda table: table.name)
def test_the_image_tables_are_the_pinned_sdks_copies(table):
    sdk_copy = Path(
        str(metadata.distribution("sagemaker-core").locate_file(f"{SDK_TABLES}{table.name}"))
    )
    # On a mismatch after an SDK update: cp "$(that path)" stacks/components/training/.
    assert table.read_bytes() == sdk_copy.read_bytes(), f"refresh {table.name} from {sdk_copy}"


def installed_with(names: list[str]) -> set[str]:
    """``names`` and every distribution they require here, as pip installs them (no extras)."""
    found: set[str] = set()
    pending = [normalized(name) for name in names]
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found.add(name)
        for text in metadata.requires(name) or ():
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(normalized(requirement.name))
    return found


def test_the_stacks_import_only_what_make_synth_installs():
    # make synth installs requirements.txt alone (no Pillow, boto3 or SageMaker SDK): a stack
    # reaching, even through counting_core, a module of anything else fails a fresh clone.
    # detector/ is this repository's too: the stacks import its standard-library-only
    # detector.source (the training job's source tarball), which must not reach torch.
    graph = grimp.build_graph("stacks", "counting_core", "detector", include_external_packages=True)
    imported = {
        module
        for module in graph.find_upstream_modules("stacks", as_package=True)
        if not module.startswith(("stacks", "counting_core", "detector"))
        and module not in sys.stdlib_module_names
    }
    providers = metadata.packages_distributions()
    synth_environment = installed_with(requirement_names("requirements.txt"))

    outside = {
        module: providers.get(module)
        for module in imported
        if not {normalized(name) for name in providers.get(module, [])} & synth_environment
    }

    assert "aws_cdk" in imported  # the graph did reach the stacks' imports
    assert outside == {}, "imported by the stacks but not installed by make synth"


def test_the_imaging_layer_holds_pillow_the_typeface_and_its_licence():
    from stacks.components.python_function import install_wheels

    layer = install_wheels(*IMAGING, licences=IMAGING_LICENCES) / "python"

    assert (layer / "PIL" / "Image.py").is_file()
    font = layer / "cvttf_NotoSansCJK_Regular" / "NotoSansCJKtc-Regular.otf"
    # Noto Sans CJK TC Regular 1.004 as the distribution ships it (its name table says so).
    assert hashlib.sha256(font.read_bytes()).hexdigest() == (
        "f57e46120a3dd025ac993801981849622405d1359b32093b1f046490f7885711"
    )
    licence = (layer / "licenses" / "NotoSansCJK-OFL-1.1.txt").read_text(encoding="utf-8")
    assert "SIL OPEN FONT LICENSE Version 1.1" in licence
    # pip --target installs the wheel's data copy of the font nowhere: the layer has one copy.
    assert len(list(layer.rglob("*.otf"))) == 1
