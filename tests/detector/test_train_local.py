"""A real CPU training run on synthetic scenes, then model.tar.gz -> the model's own
inference.py -> responses that ``counting evaluate`` and ``counting count`` read."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.detector.torch_required import require_torch

require_torch()

import torch  # noqa: E402

import counting  # noqa: E402
from counting.detector import _require_torch  # noqa: E402
from counting_core.errors import InputError  # noqa: E402
from detector import scenes, source, train  # noqa: E402

# The training job's metric definitions (detector contract).
MAP_LINE = re.compile(r"validation:mAP=([0-9.]+)")
LOSS_LINE = re.compile(r"train:loss=([0-9.]+)")
EPOCHS = 2


def run_cli(*argv: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = counting.main([str(arg) for arg in argv])
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Ten 256 px scenes of up to 12 shapes, trained on for two short epochs (about 15 s)."""
    folder = tmp_path_factory.mktemp("trained")
    files = scenes.write_scenes(folder / "scenes", 10, seed=7, size=(256, 256), max_objects=12)
    model = folder / "out" / "model.tar.gz"
    status, out, err = run_cli(
        "detector", "train-local", "--manifest", files.manifest, "--images", files.images,
        "--out", model, "--detector", "ssdlite320_mobilenet_v3_large", "--image-size", 256,
        "--epochs", EPOCHS, "--batch-size", 4,
    )  # fmt: skip
    assert status == 0, err
    return {"files": files, "model": model, "out": json.loads(out), "log": err, "folder": folder}


def sagemaker_channels(
    folder: Path, files: scenes.SceneFiles, *, train: tuple[int, int], validation: int
) -> dict[str, str]:
    """SM_* variables for channels holding the scenes' manifest lines ``train`` (a range)
    and ``validation`` (one line), as SageMaker sets them."""
    lines = files.manifest.read_text().splitlines()
    for name, chosen in (("train", lines[slice(*train)]), ("validation", [lines[validation]])):
        (folder / name).mkdir()
        (folder / name / f"{name}.manifest").write_text("\n".join(chosen) + "\n")
    (folder / "model").mkdir()
    return {
        "SM_CHANNEL_TRAIN": str(folder / "train"),
        "SM_CHANNEL_VALIDATION": str(folder / "validation"),
        "SM_CHANNEL_IMAGES": str(files.images),
        "SM_MODEL_DIR": str(folder / "model"),
    }


def test_the_model_tarball_is_laid_out_as_the_inference_container_loads_it(trained):
    with tarfile.open(trained["model"]) as archive:
        names = set(archive.getnames())
        description = json.load(archive.extractfile("model.json"))

    assert {"model.pth", "model.json", "code/inference.py", "code/detector/models.py"} <= names
    assert not [name for name in names if "__pycache__" in name]
    assert description == {
        "format": 1,
        "detector": "ssdlite320_mobilenet_v3_large",
        "num_classes": 4,  # circle, square, triangle, diamond: ids 0..3
        "image_size": 256,
        "max_detections": 1000,
        "label_attribute": "scenes",
    }


def test_each_epoch_prints_the_lines_the_metric_definitions_read(trained):
    from stacks.components.training.train import METRIC_DEFINITIONS

    log = trained["log"]
    # What SageMaker would read from this log with the training job's own definitions.
    read = {
        definition["Name"]: re.findall(definition["Regex"], log)
        for definition in METRIC_DEFINITIONS
    }

    assert len(MAP_LINE.findall(log)) == EPOCHS
    assert len(LOSS_LINE.findall(log)) == EPOCHS
    assert all(0.0 <= float(value) <= 1.0 for value in MAP_LINE.findall(log))
    assert set(read) == {"validation:mAP", "validation:mAP_coco", "train:loss"}
    assert all(len(values) == EPOCHS for values in read.values())
    # IoU 0.5 is the looser overlap: its mAP is never below the COCO average's.
    assert all(
        float(at_50) >= float(coco)
        for at_50, coco in zip(read["validation:mAP"], read["validation:mAP_coco"], strict=True)
    )
    # Prepare's split of the ten scenes for this detector: 20 % of them held out, those
    # without boxes too.
    assert "data: " in log
    assert f"trained {EPOCHS} of {EPOCHS} epoch(s)" in log


def test_predictions_are_read_by_counting_evaluate_and_counting_count(trained, tmp_path):
    held_out = scenes.write_scenes(
        tmp_path / "held-out", 3, seed=7, size=(256, 256), max_objects=12, first=100
    )
    images = sorted(held_out.images.glob("*.jpg"))
    responses = tmp_path / "responses"

    status, out, err = run_cli(
        "detector", "predict", "--model", trained["model"], "--out-dir", responses, *images
    )

    assert (status, err) == (0, "")
    names = sorted(path.name for path in responses.iterdir())
    assert names == [
        "scene-00100.jpg.out", "scene-00101.jpg.out", "scene-00102.jpg.out"
    ]  # fmt: skip
    status, out, err = run_cli(
        "evaluate", "--manifest", held_out.manifest, "--predictions-dir", responses
    )
    assert (status, err) == (0, "")
    assert json.loads(out)["images"] == 3
    response = json.loads((responses / "scene-00100.jpg.out").read_text())
    assert response["max_detections"] == 1000
    status, out, err = run_cli(
        "count", responses / "scene-00100.jpg.out", "--threshold", "0.2",
        "--class-map", held_out.class_map,
    )  # fmt: skip
    # A model trained for seconds may fill its whole cap with weak boxes: the count then
    # says so (capped), as it must for any answer holding max_detections boxes.
    capped = len(response["prediction"]) == response["max_detections"]
    assert status == 0
    assert err.startswith("counting: warning: capped:") if capped else err == ""
    scored = [row for row in response["prediction"] if row[1] >= 0.2]
    assert json.loads(out)["count"] == len(scored)
    assert json.loads(out)["capped"] is capped


def test_predict_runs_the_models_own_code_not_the_projects(trained, tmp_path):
    unpacked = tmp_path / "model"
    with tarfile.open(trained["model"]) as archive:
        archive.extractall(unpacked, filter="data")
    handler = unpacked / "code" / "inference.py"
    replacement = 'def output_fn(prediction, accept):\n    return \'{"from": "model"}\'\n'
    handler.write_text(handler.read_text() + "\n\n" + replacement)
    edited = tmp_path / "edited.tar.gz"
    with tarfile.open(edited, "w:gz") as archive:
        for path in sorted(unpacked.iterdir()):
            archive.add(path, arcname=path.name)
    image = next(iter(sorted(trained["files"].images.glob("*.jpg"))))

    status, _, err = run_cli("detector", "predict", "--model", edited, "--out-dir", tmp_path, image)

    assert (status, err) == (0, "")
    assert json.loads((tmp_path / f"{image.name}.out").read_text())["from"] == "model"


def test_images_missing_under_images_are_refused_in_one_line(trained, tmp_path):
    files = trained["files"]
    (tmp_path / "images").mkdir()
    shutil.copy(files.images / "scene-00000.jpg", tmp_path / "images")

    status, _, err = run_cli(
        "detector", "train-local", "--manifest", files.manifest, "--images", tmp_path / "images",
        "--out", tmp_path / "model.tar.gz", "--detector", "ssdlite320_mobilenet_v3_large",
    )  # fmt: skip

    assert status == 2
    lines = err.splitlines()
    assert len(lines) == 1
    # Ten scenes, one copied: whatever the split, the first missing images (the one without
    # boxes among them: a negative is trained on too) are named and the rest counted.
    assert re.fullmatch(
        r"counting: error: \d image\(s\) missing from the images channel "
        + re.escape(str(tmp_path / "images"))
        + r": scene-000\d\d.jpg(, scene-000\d\d.jpg)*( and \d more)?",
        lines[0],
    ), lines[0]
    assert not (tmp_path / "model.tar.gz").exists()


def test_the_shipped_train_py_runs_and_a_second_run_resumes_from_its_checkpoint(trained, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    source.write_source_tarball(tmp_path / "sourcedir.tar.gz")
    with tarfile.open(tmp_path / "sourcedir.tar.gz") as archive:
        archive.extractall(code, filter="data")
    environ = sagemaker_channels(tmp_path, trained["files"], train=(1, 4), validation=4)
    hyperparameters = [
        "--label_attribute", "scenes", "--num_classes", "4",
        "--detector", "ssdlite320_mobilenet_v3_large", "--image_size", "128",
        "--batch_size", "2", "--checkpoint_dir", str(tmp_path / "checkpoints"),
        "--sagemaker_program", "train.py",
    ]  # fmt: skip

    # As script mode runs it: `python train.py --name value ...` in the code folder.
    first = subprocess.run(
        [sys.executable, "train.py", *hyperparameters, "--epochs", "1"],
        cwd=code, env={**os.environ, **environ}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "trained 1 of 1 epoch(s)" in first.stdout
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = train.main([*hyperparameters, "--epochs", "2"], environ)

    assert status == 0
    assert "checkpoint: resuming after epoch 1" in out.getvalue()
    assert "trained 2 of 2 epoch(s)" in out.getvalue()
    assert len(MAP_LINE.findall(out.getvalue())) == 1  # only the epoch left to train
    assert (tmp_path / "model" / "code" / "inference.py").is_file()

    # Interrupted after an hour of a 30-minute budget (as SageMaker's runtime counted it):
    # the resumed job has no time left, and saves the model it has instead of training on.
    checkpoint = tmp_path / "checkpoints" / train.CHECKPOINT_FILE
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state["progress"]["seconds"] = 3600.0
    torch.save(state, checkpoint)
    late = io.StringIO()
    with contextlib.redirect_stdout(late):
        status = train.main([*hyperparameters, "--epochs", "3", "--max_minutes", "30"], environ)

    assert status == 0
    assert "trained 2 of 3 epoch(s)" in late.getvalue()
    assert "(time budget reached)" in late.getvalue()
    assert MAP_LINE.findall(late.getvalue()) == []


def test_a_misspelt_hyperparameter_stops_the_job():
    with pytest.raises(SystemExit) as stopped:
        train.parse_hyperparameters(
            ["--label_attribute", "a", "--num_classes", "2", "--epoch", "3"]
        )

    assert stopped.value.code == 2


def test_bad_data_ends_the_job_with_the_reason_in_the_failure_file(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "train.manifest").write_text('{"source-ref": "s3://b/a.jpg"}\n')
    environ = {
        "SM_CHANNEL_TRAIN": str(tmp_path / "train"),
        "SM_CHANNEL_VALIDATION": str(tmp_path / "train"),
        "SM_CHANNEL_IMAGES": str(tmp_path),
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "SM_OUTPUT_DIR": str(tmp_path / "output"),
    }
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = train.main(["--label_attribute", "boxes", "--num_classes", "2"], environ)

    message = (
        "train.py: error: train.manifest: line 1: no 'boxes' and no failure-reason in its metadata"
    )
    assert status == 2
    assert err.getvalue() == message + "\n"
    assert (tmp_path / "output" / "failure").read_text() == message


def test_without_torch_the_commands_say_how_to_install_it():
    with pytest.raises(InputError) as raised:
        _require_torch(("no_such_module_for_this_test",))

    assert str(raised.value) == (
        "the detector commands need torch and torchvision: run `make detector` "
        "(it installs them into .venv)"
    )


def test_coco_weights_start_the_training_with_batch_norm_kept_as_loaded(trained, tmp_path):
    import torch

    from detector import models

    coco = models.build(
        "fasterrcnn_mobilenet_v3_large_fpn", num_classes=90, image_size=128, max_detections=10
    )
    state = coco.state_dict()
    statistic, scale = "backbone.body.0.1.running_mean", "backbone.body.0.1.weight"
    state[statistic] = torch.full_like(state[statistic], 0.5)
    state[scale] = torch.full_like(state[scale], 2.0)
    (tmp_path / "weights").mkdir()
    torch.save(state, tmp_path / "weights" / "coco-made.pth")
    environ = sagemaker_channels(tmp_path, trained["files"], train=(1, 3), validation=3)
    environ["SM_CHANNEL_WEIGHTS"] = str(tmp_path / "weights")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = train.main(
            [
                "--label_attribute", "scenes", "--num_classes", "4", "--image_size", "128",
                "--epochs", "1", "--batch_size", "2",
                "--checkpoint_dir", str(tmp_path / "checkpoints"),
            ],
            environ,
        )  # fmt: skip

    assert status == 0
    assert (
        "weights: coco-made.pth; trained afresh: roi_heads.box_predictor.bbox_pred.bias, "
        "roi_heads.box_predictor.bbox_pred.weight, roi_heads.box_predictor.cls_score.bias, "
        "roi_heads.box_predictor.cls_score.weight"
    ) in out.getvalue()
    trained_state = torch.load(tmp_path / "model" / "model.pth", weights_only=True)
    # Frozen as torchvision fine-tunes Faster R-CNN: statistics and scales as loaded.
    assert torch.all(trained_state[statistic] == 0.5)
    assert torch.all(trained_state[scale] == 2.0)
