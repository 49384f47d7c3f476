"""What every command line is expected to do: help when called bare, a version, quiet pipes."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

import counting
from tests.conftest import ROOT, RunCli


def test_no_arguments_print_the_help_and_status_2(cli: RunCli, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["counting"])

    status, out, err = cli()

    assert status == 2
    assert out.startswith("usage: counting [-h] [--version]")
    assert "{count,invoke,manifest,labeling,train,evaluate,bulk" in out
    assert err == ""


def test_version_is_the_installed_distributions(capsys):
    with pytest.raises(SystemExit) as stopped:
        counting.main(["--version"])

    # pyproject.toml's [project] version, installed by `pip install -e .` in make test.
    assert (stopped.value.code, capsys.readouterr().out) == (0, "counting 0.1.0\n")


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path):
    # `counting count ... | head -c 1`. 2,000 detections print far more than a pipe holds
    # (64 KiB on Linux), so the write fails however early or late the reader leaves.
    response = tmp_path / "response.json"
    response.write_text(json.dumps({"prediction": [[0, 0.9, 0.1, 0.1, 0.2, 0.2]] * 2000}))
    command = [sys.executable, "-m", "counting", "count", str(response)]
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdout.close()
        err = process.stderr.read()
        status = process.wait(timeout=60)

    assert (status, err) == (141, b"")


EXAMPLES = ROOT / "examples"
# What each command that writes a file takes, on the samples in examples/.
WRITERS = {
    "--annotate": (
        "count", EXAMPLES / "predictions.json", "--image", EXAMPLES / "image.jpg",
        "--annotate",
    ),
    "--plot": (
        "evaluate", "--manifest", EXAMPLES / "evaluation" / "validation.manifest",
        "--predictions-dir", EXAMPLES / "evaluation" / "responses", "--plot",
    ),
}  # fmt: skip


@pytest.mark.parametrize("option", sorted(WRITERS))
def test_a_picture_goes_into_a_folder_made_for_it_as_out_dir_does(cli: RunCli, tmp_path, option):
    picture = tmp_path / "not" / "yet" / "there.png"

    status, out, err = cli(*WRITERS[option], picture)

    assert (status, err) == (0, "")
    assert json.loads(out)
    assert picture.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")  # PNG's signature


def test_a_manifest_goes_into_a_folder_made_for_it(cli: RunCli, tmp_path):
    manifest = tmp_path / "converted" / "street.manifest"

    status, _, _ = cli(
        "manifest", "from-coco", EXAMPLES / "coco-cvat.json", "--label-attribute", "vehicles",
        "--image-prefix", "s3://my-counting-data/labeling/images/street/", "--out", manifest,
    )  # fmt: skip

    assert status == 0
    assert len(manifest.read_text().splitlines()) == 3  # the sample's three images


@pytest.mark.parametrize("name", ["there.jpg", "there.JPEG", "there.svg", "there"])
@pytest.mark.parametrize("option", sorted(WRITERS))
def test_png_data_under_another_name_is_refused_before_anything_runs(
    cli: RunCli, tmp_path, option, name
):
    status, out, err = cli(*WRITERS[option], tmp_path / name)

    assert (status, out) == (2, "")
    assert err == (
        f"counting: error: {option}: {tmp_path / name}: the picture is a PNG image; "
        "give it a name ending in .png\n"
    )
    assert list(tmp_path.iterdir()) == []


def options_of_every_command() -> dict[str, set[tuple[str, str]]]:
    """Option -> {(its metavar, the command)}, over every sub-command of `counting`."""
    found: dict[str, set[tuple[str, str]]] = {}

    def walk(parser: argparse.ArgumentParser, command: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{command} {name}".strip())
            elif action.option_strings and action.nargs != 0:  # not flags, -h, --version
                metavar = str(action.metavar or action.dest.upper())
                found.setdefault(action.option_strings[-1], set()).add((metavar, command))

    walk(counting.build_parser(), "")
    return found


# The same option names one thing everywhere, shown the same way; these two name a kind of
# thing whose form differs: --manifest is a file here and an S3 object for `train start`,
# --out the file a command writes (a manifest, a model archive).
FORM_DIFFERS = {"--manifest", "--out"}


def test_an_option_shows_the_same_value_in_every_command():
    options = options_of_every_command()
    shown = {option: {metavar for metavar, _ in uses} for option, uses in options.items()}

    # Guards the walk: the options several commands share were found.
    assert {"--bucket", "--label-attribute", "--seed", "--region", "--out-dir"} <= set(options)
    assert {option: metavars for option, metavars in shown.items() if len(metavars) > 1} == {
        option: shown[option] for option in FORM_DIFFERS
    }


def test_a_folder_to_write_is_out_dir_and_a_file_out():
    options = options_of_every_command()

    assert {metavar for metavar, _ in options["--out-dir"]} == {"DIR"}
    assert "DIR" not in {metavar for metavar, _ in options["--out"]}


def test_make_test_leaves_the_counting_command_beside_its_python():
    # README: `counting` is in .venv/bin after `make test` (the dev install is
    # `pip install -e .`, whose [project.scripts] entry writes the script there).
    script = Path(sys.executable).parent / "counting"

    ran = subprocess.run([script, "--version"], capture_output=True, text=True, check=False)

    assert (ran.returncode, ran.stdout) == (0, "counting 0.1.0\n")


def test_split_without_options_splits_as_the_pipeline_does(cli: RunCli, tmp_path):
    # docs/configuration.md: training.validation_fraction 0.2, training.split_seed 42.
    manifest = EXAMPLES / "ground-truth.manifest"

    defaults = cli("manifest", "split", manifest, "--out-dir", tmp_path / "defaults")
    given = cli(
        "manifest", "split", manifest, "--validation-fraction", "0.2", "--seed", "42",
        "--out-dir", tmp_path / "given",
    )  # fmt: skip

    assert defaults == given
    for name in ("train.manifest", "validation.manifest"):
        # same code: the split with its options left out and given as the pipeline's
        assert (tmp_path / "defaults" / name).read_bytes() == (
            tmp_path / "given" / name
        ).read_bytes()


@pytest.mark.parametrize(
    "command",
    [
        ("labeling", "start", "--request", "request.json"),
        ("train", "rollback"),
        ("stage", "teardown"),
        ("detector", "fetch-weights", "--detector", "ssdlite320_mobilenet_v3_large"),
    ],
    ids=lambda command: " ".join(command[:2]),
)
@pytest.mark.parametrize("bucket", ["s3://my-counting-data/labeling/", "my counting data"])
def test_a_bucket_that_is_neither_a_name_nor_an_s3_uri_is_one_line(cli: RunCli, command, bucket):
    status, out, err = cli(*command, "--bucket", bucket)

    assert (status, out) == (2, "")
    assert err == (
        f"counting: error: --bucket: {bucket!r} is not a bucket name or s3://bucket URI\n"
    )
