"""``counting detector``: train and run the torchvision detector on this machine, fetch its
COCO weights into the data bucket, and draw synthetic counting scenes.

``train-local`` runs the training job's own code (``detector.train``) on the CPU with the
channels SageMaker would give it, and packs ``model.tar.gz`` as SageMaker does; ``predict``
runs the model's own ``code/inference.py``, as the inference container would, and writes
one response per image named as Batch Transform names them (``<file name>.out``), which
``counting evaluate`` and ``counting count`` read. torch is imported only by the commands
that need it (``make detector`` installs it).
"""

# torch, Pillow and boto3 are imported inside the handlers: every command group is imported
# to build the parser, and `counting --help` should neither pay for them nor need them.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from counting.options import add_bucket_option, add_split_options, bucket_name
from counting_core import layout
from counting_core.datasets import manifest
from counting_core.errors import InputError
from counting_core.imaging.image_formats import detect_format
from counting_core.models import detectors
from detector.weights import COCO_WEIGHTS, PublishedWeights, sha256

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}
RESPONSE_SUFFIX = ".out"
DOWNLOAD_CHUNK = 1 << 20
MISSING_TORCH = (
    "the detector commands need torch and torchvision: run `make detector` "
    "(it installs them into .venv)"
)
# Runs in a separate Python whose path starts at the model's code/ folder, so that it
# imports the model's inference.py and detector package, not this project's.
_INFERENCE_RUNNER = """
import sys
from pathlib import Path
model_dir, out_dir, *jobs = sys.argv[1:]
import inference
if Path(inference.__file__).resolve().parent != (Path(model_dir) / "code").resolve():
    sys.exit(f"imported {inference.__file__}, not the model's code/inference.py")
model = inference.model_fn(model_dir)
for image, content_type, out_name in zip(jobs[0::3], jobs[1::3], jobs[2::3]):
    request = inference.input_fn(Path(image).read_bytes(), content_type)
    body = inference.output_fn(inference.predict_fn(request, model), "application/json")
    Path(out_dir, out_name).write_text(body, encoding="utf-8")
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser(
        "detector", help="train and run the torchvision detector here; fetch its COCO weights"
    )
    commands = group.add_subparsers(dest="detector_command", required=True)
    _register_train_local(commands)
    _register_predict(commands)
    _register_fetch_weights(commands)
    _register_scenes(commands)


def _register_train_local(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "train-local",
        help="train the detector on this machine's CPU into a model.tar.gz",
        description=(
            "Run the training job's train.py here on a labeled manifest and pack the model as "
            "SageMaker does. Each source-ref is looked up under --images, keeping the folders "
            "below the manifests' common prefix. Without --validation-manifest, the images "
            "are split as Prepare splits them (counting manifest split: failed items and "
            "images without boxes left out, a shuffled --validation-fraction held out)."
        ),
    )
    parser.add_argument("--manifest", required=True, type=Path, metavar="MANIFEST")
    parser.add_argument("--images", required=True, type=Path, metavar="DIR")
    parser.add_argument("--out", required=True, type=Path, metavar="MODEL.tar.gz")
    parser.add_argument("--validation-manifest", type=Path, metavar="MANIFEST")
    add_split_options(parser, seed_help="split and training seed")
    parser.add_argument(
        "--label-attribute", metavar="NAME", help="the manifest's label attribute, if several"
    )
    parser.add_argument(
        "--minutes", type=_positive(float), metavar="N", help="training time budget"
    )
    # COCO_WEIGHTS names every detector detector.models builds (tests/detector checks it),
    # without importing torch to build the parser.
    parser.add_argument("--detector", default=detectors.DEFAULT, choices=sorted(COCO_WEIGHTS))
    # Unset: train.py's own defaults, as a training job gets them (512 px, 30 epochs).
    parser.add_argument("--image-size", type=_positive(int), metavar="PX")
    parser.add_argument("--epochs", type=_positive(int))
    parser.add_argument("--batch-size", type=_positive(int), default=4)
    parser.add_argument(
        "--weights", type=Path, metavar="FILE", help="torchvision's COCO weights (.pth)"
    )
    parser.set_defaults(handler=_train_local)


def _register_predict(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "predict",
        help="run a model.tar.gz's inference.py on images, writing <file name>.out each",
        description=(
            "Unpack a model.tar.gz and run its code/inference.py on each image as the "
            "inference container does; write the responses into --out-dir named as Batch "
            "Transform names them (<image file name>.out), for counting evaluate and count."
        ),
    )
    parser.add_argument("--model", required=True, type=Path, metavar="MODEL.tar.gz")
    parser.add_argument("--out-dir", required=True, type=Path, metavar="DIR")
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.set_defaults(handler=_predict)


def _register_fetch_weights(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "fetch-weights",
        help="download torchvision's COCO weights, check them, upload them to the data bucket",
        description=(
            "Download the detector's COCO-pretrained weights file that torchvision publishes "
            "(or take --file), check its SHA-256 against the prefix in its published name, and "
            f"upload it to s3://BUCKET/{layout.DETECTOR_WEIGHTS}<file name>, where training "
            "reads it."
        ),
    )
    parser.add_argument("--detector", required=True, choices=sorted(COCO_WEIGHTS))
    add_bucket_option(parser)
    parser.add_argument("--file", type=Path, metavar="FILE", help="a copy downloaded already")
    parser.add_argument("--region", help="AWS Region (default: from the AWS configuration)")
    parser.set_defaults(handler=_fetch_weights)


def _register_scenes(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "scenes",
        help="write synthetic counting scenes with their manifest and class map",
        description=(
            "Write JPEG scenes of 0 to 60 shapes of four classes on a cluttered background, "
            "a Ground Truth manifest labeling them and class-map.json. Same seed, same files."
        ),
    )
    parser.add_argument("--out-dir", required=True, type=Path, metavar="DIR")
    parser.add_argument("--count", required=True, type=int, metavar="N")
    parser.add_argument("--seed", type=int, default=0, metavar="SEED")
    parser.add_argument("--size", type=int, default=512, metavar="PX", help="side of a scene")
    parser.set_defaults(handler=_scenes)


# --- train-local ---------------------------------------------------------------------


def _train_local(args: argparse.Namespace) -> int:
    _require_torch()
    from detector import train

    if not args.images.is_dir():
        raise InputError(f"{args.images}: not a folder")
    with tempfile.TemporaryDirectory(prefix="counting-detector-") as scratch:
        folder = Path(scratch)
        channels = {name: folder / name for name in ("train", "validation", "model")}
        for path in channels.values():
            path.mkdir()
        label_attribute, num_classes = _write_channels(
            args,
            channels["train"] / "train.manifest",
            channels["validation"] / "validation.manifest",
        )
        hyperparameters = {
            "label_attribute": label_attribute,
            "num_classes": num_classes,
            "detector": args.detector,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "checkpoint_dir": folder / "checkpoints",
        }
        given = {"image_size": args.image_size, "epochs": args.epochs, "max_minutes": args.minutes}
        hyperparameters.update({name: value for name, value in given.items() if value is not None})
        environ = {
            "SM_CHANNEL_TRAIN": str(channels["train"]),
            "SM_CHANNEL_VALIDATION": str(channels["validation"]),
            "SM_CHANNEL_IMAGES": str(args.images),
            "SM_MODEL_DIR": str(channels["model"]),
        }
        if args.weights is not None:
            if not args.weights.is_file():
                raise InputError(f"{args.weights}: no such file")
            (folder / "weights").mkdir()
            (folder / "weights" / args.weights.name).symlink_to(args.weights.resolve())
            environ["SM_CHANNEL_WEIGHTS"] = str(folder / "weights")
        argv = [
            text for name, value in hyperparameters.items() for text in (f"--{name}", str(value))
        ]
        try:
            hyper = train.parse_hyperparameters(argv)
            # The same steps as train.main, with bad data raised as one line here; the
            # training log goes to stderr, stdout carries the command's JSON.
            with contextlib.redirect_stdout(sys.stderr):
                train.train(hyper, train.channels_from(environ))
        except ValueError as error:  # detector.targets.DataError and the model's checks
            raise InputError(str(error)) from None
        _pack_model(channels["model"], args.out)
    del hyperparameters["checkpoint_dir"]  # a temporary folder, gone by now
    print(json.dumps({"model": str(args.out), **hyperparameters}, indent=2))
    return 0


def _write_channels(args: argparse.Namespace, train: Path, validation: Path) -> tuple[str, int]:
    """Write the train and validation channels; return the label attribute and num_classes."""
    checked = [_checked_manifest(args.manifest, args.label_attribute)]
    if args.validation_manifest is None:
        manifest.check_validation_fraction(args.validation_fraction)
        try:
            with args.manifest.open("rb") as file:
                split = manifest.split(
                    file,
                    label_attribute=checked[0].label_attribute,
                    validation_fraction=args.validation_fraction,
                    seed=args.seed,
                    # The torchvision detector learns from images without boxes too.
                    keep_empty=True,
                )
                with train.open("wb") as train_file, validation.open("wb") as validation_file:
                    split.write(train_file, validation_file)
        except InputError as error:
            raise InputError(f"{args.manifest}: {error}") from None
    else:
        checked.append(_checked_manifest(args.validation_manifest, checked[0].label_attribute))
        train.write_bytes(args.manifest.read_bytes())
        validation.write_bytes(args.validation_manifest.read_bytes())
    class_ids = [class_id for one in checked for class_id in one.class_map]
    if not class_ids:
        raise InputError(f"{args.manifest}: no class-map: no image has a box")
    return checked[0].label_attribute, max(class_ids) + 1


def _checked_manifest(path: Path, label_attribute: str | None) -> manifest.Manifest:
    try:
        with path.open("rb") as file:
            return manifest.validate_manifest(manifest.read_manifest(file), label_attribute)
    except InputError as error:
        raise InputError(f"{path}: {error}") from None


def _pack_model(model_dir: Path, out: Path) -> None:
    # SageMaker tars the contents of the model folder, not the folder itself.
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as archive:
        for path in sorted(model_dir.rglob("*")):
            if "__pycache__" not in path.parts:
                archive.add(path, arcname=path.relative_to(model_dir).as_posix(), recursive=False)


# --- predict -------------------------------------------------------------------------


def _predict(args: argparse.Namespace) -> int:
    _require_torch()
    jobs = [(image, _content_type(image), image.name + RESPONSE_SUFFIX) for image in args.images]
    repeated = [name for name, times in Counter(out for *_, out in jobs).items() if times > 1]
    if repeated:
        raise InputError(
            f"several images would be answered in {repeated[0]}: Batch Transform names a "
            "response after the image's file name only; predict them into separate folders"
        )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="counting-model-") as scratch:
        model_dir = Path(scratch)
        _unpack_model(args.model, model_dir)
        command = [
            sys.executable,
            "-c",
            _INFERENCE_RUNNER,
            str(model_dir),
            str(args.out_dir.resolve()),
        ]
        command += [str(text) for image, *rest in jobs for text in (image.resolve(), *rest)]
        # PYTHONPATH puts the model's code/ first, as the inference container does.
        environ = {**os.environ, "PYTHONPATH": str(model_dir / "code")}
        # This interpreter and a fixed runner; the user's paths are its arguments, no shell.
        finished = subprocess.run(  # noqa: S603
            command,
            cwd=model_dir / "code",
            env=environ,
            capture_output=True,
            text=True,
            check=False,
        )
    if finished.returncode != 0:
        last = (finished.stderr.strip().splitlines() or ["no message"])[-1]
        raise InputError(f"{args.model}: inference.py failed: {last}")
    written = [str(args.out_dir / out) for *_, out in jobs]
    print(json.dumps({"responses": written}, indent=2))
    return 0


def _content_type(image: Path) -> str:
    with image.open("rb") as file:
        head = file.read(16)
    try:
        return CONTENT_TYPES[detect_format(head)]
    except InputError as error:
        raise InputError(f"{image}: {error}") from None


def _unpack_model(archive_path: Path, folder: Path) -> None:
    try:
        with tarfile.open(archive_path, "r:gz") as archive:
            archive.extractall(folder, filter="data")
    except (tarfile.TarError, EOFError) as error:
        raise InputError(f"{archive_path}: not a model.tar.gz ({error})") from None
    missing = [name for name in ("model.json", "model.pth", "code/inference.py")
               if not (folder / name).is_file()]  # fmt: skip
    if missing:
        raise InputError(
            f"{archive_path}: not a torchvision detector model: no {', '.join(missing)}"
        )


# --- fetch-weights -------------------------------------------------------------------


def _fetch_weights(args: argparse.Namespace) -> int:
    from counting import aws

    bucket = bucket_name(args.bucket)
    published = COCO_WEIGHTS[args.detector]
    with tempfile.TemporaryDirectory(prefix="counting-weights-") as scratch:
        path = args.file if args.file is not None else _download(published, Path(scratch))
        digest = sha256(path)
        if not digest.startswith(published.hash_prefix):
            raise InputError(
                f"{path}: SHA-256 {digest[:12]}... does not start with {published.hash_prefix}, "
                f"the prefix torchvision publishes for {published.file_name}: not that file"
            )
        key = layout.DETECTOR_WEIGHTS + published.file_name
        s3 = aws.client("s3", args.region)
        # put_object, not upload_file: a refusal stays a ClientError (one line), and a
        # weights file (75 MB) is far below a single request's 5 GB.
        with (
            aws.reported(f"s3://{bucket}/{key}", doing="upload the weights"),
            path.open("rb") as body,
        ):
            s3.put_object(Bucket=bucket, Key=key, Body=body)
    print(json.dumps({"weights": f"s3://{bucket}/{key}", "sha256": digest}, indent=2))
    return 0


def _download(published: PublishedWeights, folder: Path) -> Path:
    path = folder / published.file_name
    try:
        with (
            # published.url is one of detector.weights.COCO_WEIGHTS' https addresses, not input.
            urllib.request.urlopen(published.url, timeout=60) as response,  # noqa: S310
            path.open("wb") as out,
        ):
            while chunk := response.read(DOWNLOAD_CHUNK):
                out.write(chunk)
    except (urllib.error.URLError, OSError) as error:
        raise InputError(f"cannot download {published.url}: {error}") from None
    return path


# --- scenes --------------------------------------------------------------------------


def _scenes(args: argparse.Namespace) -> int:
    from detector import scenes

    if args.count < 1:
        raise InputError(f"--count must be at least 1, got {args.count}")
    if args.size < 4 * scenes.MAX_SIDE:
        raise InputError(f"--size must be at least {4 * scenes.MAX_SIDE} px, got {args.size}")
    files = scenes.write_scenes(
        args.out_dir, args.count, seed=args.seed, size=(args.size, args.size)
    )
    summary: dict[str, Any] = {
        "manifest": str(files.manifest),
        "images": str(files.images),
        "class_map": str(files.class_map),
        "scenes": len(files.counts),
        "objects": sum(files.counts),
    }
    print(json.dumps(summary, indent=2))
    return 0


def _positive(kind: type[int] | type[float]) -> Any:
    """An argparse type: a number of ``kind`` above 0."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _require_torch(modules: Sequence[str] = ("torch", "torchvision")) -> None:
    import importlib.util

    if any(importlib.util.find_spec(module) is None for module in modules):
        raise InputError(MISSING_TORCH)
