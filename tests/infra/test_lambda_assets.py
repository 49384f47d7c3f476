"""Each Lambda asset holds its handler and only the core modules it uses: no CLI code.

The assets are staged by ``package_code`` exactly as synth stages them; every import reachable
from each handler is then resolved against the asset alone, so a module left out fails here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stacks.components.python_function import package_code
from tests.conftest import ROOT

HANDLERS = sorted(
    path.parent.name for path in (ROOT / "lambdas").glob("*/handler.py") if path.is_file()
)


def python_files(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*.py")}


def test_every_handler_folder_is_covered():
    assert HANDLERS == [
        "bulk_cleanup",
        "bulk_counter",
        "counter",
        "cut_tiles",
        "evaluate_counts",
        "labeling_launcher",
        "prepare_training_data",
        "studio_exports",
        "studio_project",
    ]


@pytest.mark.parametrize("name", HANDLERS)
def test_the_asset_holds_no_cli_and_no_other_handler(name):
    files = python_files(package_code(name))

    assert not any(path.startswith("counting/") for path in files)
    assert {path.split("/")[1] for path in files if path.startswith("lambdas/")} == {
        "__init__.py",
        name,
    }


def test_the_counter_asset_leaves_out_the_modules_it_does_not_import():
    files = python_files(package_code("counter"))

    # Labeling, manifests, COCO and training belong to other functions and the CLI.
    for module in ("labeling", "manifest", "coco", "training"):
        assert f"counting_core/{module}.py" not in files
    assert "counting_core/counts/predictions.py" in files
    # The adapters it writes and resends through; bulk counting's S3 JSON files are not its.
    assert {"adapters/result_store.py", "adapters/redelivery.py"} <= files
    assert "adapters/objects.py" not in files


def test_the_adapters_reach_only_the_functions_that_import_them():
    # A pipeline step takes its client policy, not the counting functions' result store.
    evaluation = python_files(package_code("evaluate_counts"))
    assert "adapters/clients.py" in evaluation
    assert "adapters/result_store.py" not in evaluation
    assert "adapters/objects.py" in python_files(package_code("bulk_counter"))


@pytest.mark.parametrize("name", HANDLERS)
def test_every_module_the_handler_reaches_is_in_its_asset(name):
    asset = package_code(name)
    # modulefinder follows every import of the handler's code without running it (a handler
    # may read its environment at import), searching the asset alone, in an isolated
    # interpreter (-I: neither the repository nor PYTHONPATH is on its path). Third-party
    # packages come from layers and are not looked for; a module of ours must be found.
    script = (
        "import modulefinder, sys; asset = sys.argv[1]; "
        "finder = modulefinder.ModuleFinder(path=[asset]); "
        f"finder.run_script(asset + '/lambdas/{name}/handler.py'); "
        "ours = ('counting_core', 'adapters', 'counting', 'lambdas', 'stacks'); "
        "missing = [m for m in finder.badmodules if m.split('.')[0] in ours]; "
        "outside = [m.__file__ for k, m in finder.modules.items() "
        "if k.split('.')[0] in ours and m.__file__ and not m.__file__.startswith(asset)]; "
        "print(missing, outside); sys.exit(1 if missing or outside else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", script, str(asset)],
        capture_output=True,
        text=True,
        check=False,
        cwd=asset,
    )
    assert result.returncode == 0, result.stdout + result.stderr
