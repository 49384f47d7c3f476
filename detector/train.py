"""Training: SageMaker script mode's entry point, also run on a laptop by train-local.

SageMaker runs ``python train.py --<hyperparameter> <value> ...`` in the PyTorch training
container with the channels in SM_CHANNEL_<NAME> folders (train, validation, images,
weights) and saves SM_MODEL_DIR as model.tar.gz. Each epoch prints ``train:loss=<mean>``
``validation:mAP=<mAP at IoU 0.5>`` and ``validation:mAP_coco=<mAP@[0.5:0.95]>`` (the
training job's metric definitions read these; the quality gate reads validation:mAP)
and saves a checkpoint; a run finding one in the checkpoint folder resumes from it
(managed spot training restarts an interrupted job so). The model folder gets
``model.pth``, ``model.json`` and ``code/`` (inference.py and this package).

Runs on CUDA with mixed precision where a GPU is present, on the CPU otherwise; written
for torch 2.6 (the container) and newer.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from detector import models, source, targets
from detector.imaging import load_image, upright_size
from detector.inference import DESCRIPTION_FILE, MODEL_FORMAT, WEIGHTS_FILE
from detector.metrics import ImageBoxes, MeanAveragePrecision, mean_average_precision

DEFAULT_CHECKPOINT_DIR = "/opt/ml/checkpoints"
CHECKPOINT_FILE = "checkpoint.pth"
DEFAULT_LEARNING_RATES = {"sgd": 0.01, "adamw": 0.0005}
WEIGHT_DECAY = 1e-4
MOMENTUM = 0.9
# The learning rate climbs from a tenth to its full value over the first iterations: a
# fresh class head's large gradients would otherwise wreck the pretrained backbone.
WARMUP_ITERATIONS = 100
GRADIENT_CLIP = 10.0
EXIT_BAD_DATA = 2


@dataclass(frozen=True)
class Hyperparameters:
    label_attribute: str
    num_classes: int
    detector: str
    image_size: int
    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: str
    max_detections: int
    seed: int
    image_prefix: str | None
    max_minutes: float | None
    checkpoint_dir: str


@dataclass(frozen=True)
class Channels:
    train: Path
    validation: Path
    images: Path
    weights: Path | None
    model: Path


def parse_hyperparameters(argv: Sequence[str]) -> Hyperparameters:
    # allow_abbrev=False: a misspelt "--epoch" must not pass for "--epochs".
    parser = argparse.ArgumentParser(prog="train.py", description=__doc__, allow_abbrev=False)
    parser.add_argument("--label_attribute", required=True)
    parser.add_argument("--num_classes", required=True, type=int)
    parser.add_argument("--detector", default=models.DEFAULT_DETECTOR, choices=models.DETECTORS)
    parser.add_argument("--image_size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--learning_rate", type=float)
    parser.add_argument("--optimizer", default="sgd", choices=DEFAULT_LEARNING_RATES)
    parser.add_argument("--max_detections", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--image_prefix")
    parser.add_argument("--max_minutes", type=float)
    parser.add_argument("--checkpoint_dir", default=DEFAULT_CHECKPOINT_DIR)
    args, unknown = parser.parse_known_args(argv)
    # SageMaker's own settings (sagemaker_program, ...) may reach the script; others are typos.
    typos = [arg for arg in unknown if arg.startswith("--") and not arg.startswith("--sagemaker_")]
    if typos:
        parser.error(f"unknown hyperparameter(s): {', '.join(typos)}")
    for name in ("num_classes", "image_size", "epochs", "batch_size", "max_detections"):
        if getattr(args, name) < 1:
            parser.error(f"{name} must be at least 1, got {getattr(args, name)}")
    if args.learning_rate is not None and not args.learning_rate > 0:
        parser.error(f"learning_rate must be above 0, got {args.learning_rate}")
    learning_rate = args.learning_rate or DEFAULT_LEARNING_RATES[args.optimizer]
    return Hyperparameters(**{**vars(args), "learning_rate": learning_rate})


def channels_from(environ: Mapping[str, str]) -> Channels:
    def folder(name: str) -> Path:
        value = environ.get(f"SM_CHANNEL_{name.upper()}")
        if not value:
            raise targets.DataError(f"no {name} channel (SM_CHANNEL_{name.upper()} is not set)")
        return Path(value)

    weights = environ.get("SM_CHANNEL_WEIGHTS")
    return Channels(
        train=folder("train"),
        validation=folder("validation"),
        images=folder("images"),
        weights=Path(weights) if weights else None,
        model=Path(environ.get("SM_MODEL_DIR", "/opt/ml/model")),
    )


# --- data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    path: Path
    target: targets.Target


class DetectionImages(Dataset[tuple[torch.Tensor, dict[str, torch.Tensor]]]):
    """Images and their targets, shrunk to the image size; flipped at random when training."""

    def __init__(self, examples: Sequence[Example], image_size: int, *, flip: bool) -> None:
        self.examples = list(examples)
        self.image_size = image_size
        self.flip = flip

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        example = self.examples[index]
        pixels, _ = load_image(example.path, self.image_size)
        boxes = scaled_boxes(example.target, pixels.shape[2], pixels.shape[1])
        if self.flip and torch.rand(()) < 0.5:
            pixels = pixels.flip(-1)
            boxes = torch.stack(
                (
                    pixels.shape[2] - boxes[:, 2],
                    boxes[:, 1],
                    pixels.shape[2] - boxes[:, 0],
                    boxes[:, 3],
                ),
                dim=1,
            )
        labels = torch.tensor(example.target.labels, dtype=torch.int64)
        return pixels, {"boxes": boxes, "labels": labels}


def scaled_boxes(target: targets.Target, width: int, height: int) -> torch.Tensor:
    """The target's corner boxes on an image of ``width`` x ``height`` (it was labeled at
    ``target.image_size``; the image may have been shrunk since)."""
    labeled_width, labeled_height = target.image_size
    scale = torch.tensor([width / labeled_width, height / labeled_height] * 2, dtype=torch.float32)
    return torch.tensor(target.boxes, dtype=torch.float32).reshape(-1, 4) * scale


def _batch(
    items: list[tuple[torch.Tensor, dict[str, torch.Tensor]]],
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    # Detection models take lists: the images differ in size and in number of boxes.
    return [image for image, _ in items], [target for _, target in items]


def manifest_files(channel: Path) -> list[Path]:
    files = sorted(channel.glob("*.manifest")) or sorted(
        p for p in channel.iterdir() if p.is_file()
    )
    if not files:
        raise targets.DataError(f"the channel {channel} holds no manifest")
    return files


def load_examples(
    channel: Path, hyper: Hyperparameters, image_prefix: str, images: Path
) -> tuple[list[Example], targets.Targets]:
    found: list[targets.Target] = []
    failed = empty = 0
    for file in manifest_files(channel):
        read = targets.manifest_targets(
            targets.read_lines(file), hyper.label_attribute, hyper.num_classes, file.name
        )
        found += read.targets
        failed, empty = failed + read.failed, empty + read.empty
    paths = [targets.image_path(target.source_ref, image_prefix) for target in found]
    targets.check_images(paths, images)
    examples = [Example(images / path, target) for path, target in zip(paths, found, strict=True)]
    targets.check_orientations(
        (path, example.target.image_size, upright_size(example.path))
        for path, example in zip(paths, examples, strict=True)
    )
    return examples, targets.Targets(tuple(found), failed, empty)


def all_source_refs(*channels: Path) -> list[str]:
    return [
        data[targets.SOURCE_REF]
        for channel in channels
        for file in manifest_files(channel)
        for _, data in targets.read_lines(file)
        if isinstance(data.get(targets.SOURCE_REF), str)
    ]


# --- training ------------------------------------------------------------------------


def learning_rate_factor(progress: float, iteration: int) -> float:
    """Warm-up, then a cosine from 1 down to 0 as ``progress`` (0..1) goes by."""
    warmup = min(1.0, 0.1 + 0.9 * iteration / WARMUP_ITERATIONS)
    return warmup * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(hyper: Hyperparameters, model: nn.Module) -> torch.optim.Optimizer:
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    if hyper.optimizer == "adamw":
        return torch.optim.AdamW(trainable, lr=hyper.learning_rate, weight_decay=WEIGHT_DECAY)
    return torch.optim.SGD(
        trainable, lr=hyper.learning_rate, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY
    )


def make_grad_scaler(enabled: bool) -> Any:
    # torch.amp.GradScaler since torch 2.3; torch.cuda.amp's before (deprecated since).
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)


@dataclass
class Progress:
    """What a checkpoint holds besides the tensors: where the run stands."""

    epochs_done: int = 0
    iterations: int = 0
    # Seconds the job had run when the checkpoint was saved: a run resumed after a spot
    # interruption keeps spending the one time budget (SageMaker's MaxRuntimeInSeconds
    # keeps counting too) instead of starting a new one.
    seconds: float = 0.0


def evaluate(
    model: nn.Module, loader: DataLoader[Any], device: torch.device
) -> MeanAveragePrecision:
    model.eval()
    found, truths = [], []
    with torch.inference_mode():
        for images, image_targets in loader:
            outputs = model([image.to(device) for image in images])
            for output, target in zip(outputs, image_targets, strict=True):
                found.append(
                    ImageBoxes(
                        output["boxes"].float().cpu(),
                        output["labels"].cpu(),
                        output["scores"].float().cpu(),
                    )
                )
                truths.append(ImageBoxes(target["boxes"], target["labels"]))
    return mean_average_precision(found, truths)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    hyper = parse_hyperparameters(sys.argv[1:] if argv is None else argv)
    try:
        channels = channels_from(environ)
        train(hyper, channels)
    except (targets.DataError, ValueError) as error:
        message = f"train.py: error: {error}"
        print(message, file=sys.stderr, flush=True)
        output = environ.get("SM_OUTPUT_DIR")
        if output:
            # SageMaker shows this file's text as the job's FailureReason.
            Path(output).mkdir(parents=True, exist_ok=True)
            (Path(output) / "failure").write_text(message, encoding="utf-8")
        return EXIT_BAD_DATA
    return 0


def train(hyper: Hyperparameters, channels: Channels) -> None:
    started = time.monotonic()
    random.seed(hyper.seed)
    torch.manual_seed(hyper.seed)
    training, validation = load_data(hyper, channels)
    session = start_session(hyper, channels.weights)
    started -= session.progress.seconds  # the time earlier attempts spent
    workers = min(8, os.cpu_count() or 1) if session.use_amp else 0
    generator = torch.Generator().manual_seed(hyper.seed + session.progress.epochs_done)
    train_loader = DataLoader(
        DetectionImages(training, hyper.image_size, flip=True),
        batch_size=hyper.batch_size,
        shuffle=True,
        generator=generator,
        num_workers=workers,
        collate_fn=_batch,
        pin_memory=session.use_amp,
        drop_last=len(training) > hyper.batch_size,
    )
    validation_loader = DataLoader(
        DetectionImages(validation, hyper.image_size, flip=False),
        batch_size=hyper.batch_size,
        num_workers=workers,
        collate_fn=_batch,
    )
    total_iterations = hyper.epochs * len(train_loader)
    budget = None if hyper.max_minutes is None else hyper.max_minutes * 60.0
    out_of_time = False
    while session.progress.epochs_done < hyper.epochs and not out_of_time:
        session.train_mode()
        losses, images_seen, epoch_started = [], 0, time.monotonic()
        for images, image_targets in train_loader:
            elapsed = time.monotonic() - started
            if budget is not None and elapsed >= budget:
                out_of_time = True
                break
            share = session.progress.iterations / total_iterations
            if budget is not None:
                # The schedule ends with whichever runs out first: the epochs or the time.
                share = max(share, elapsed / budget)
            losses.append(session.step(images, image_targets, share))
            images_seen += len(images)
        if not losses:
            break
        seconds = time.monotonic() - epoch_started
        session.progress.epochs_done += 0 if out_of_time else 1
        print(f"train:loss={sum(losses) / len(losses):.4f}", flush=True)
        print(f"train:images_per_second={images_seen / max(seconds, 1e-9):.2f}", flush=True)
        mean_ap = evaluate(session.model, validation_loader, session.device)
        print(f"validation:mAP={mean_ap.at_50:.4f}", flush=True)
        print(f"validation:mAP_coco={mean_ap.coco:.4f}", flush=True)
        session.progress.seconds = time.monotonic() - started
        session.save_checkpoint(Path(hyper.checkpoint_dir))
    print(
        f"trained {session.progress.epochs_done} of {hyper.epochs} epoch(s), "
        f"{session.progress.iterations} iteration(s)"
        f"{' (time budget reached)' if out_of_time else ''}",
        flush=True,
    )
    write_model(channels.model, session.model, hyper)


def load_data(hyper: Hyperparameters, channels: Channels) -> tuple[list[Example], list[Example]]:
    """The training and validation examples, each image checked to be in the images channel."""
    image_prefix = hyper.image_prefix
    if image_prefix is None:
        image_prefix = targets.common_prefix(all_source_refs(channels.train, channels.validation))
    training, train_figures = load_examples(channels.train, hyper, image_prefix, channels.images)
    validation, validation_figures = load_examples(
        channels.validation, hyper, image_prefix, channels.images
    )
    if not train_figures.with_boxes or not validation_figures.with_boxes:
        raise targets.DataError(
            f"{train_figures.with_boxes} training and {validation_figures.with_boxes} "
            "validation image(s) with boxes: both channels need at least one"
        )
    print(
        f"data: {len(training)} training and {len(validation)} validation images, of which "
        f"{train_figures.empty + validation_figures.empty} without boxes (learned from as "
        f"negatives); left out: {train_figures.failed + validation_figures.failed} failed",
        flush=True,
    )
    return training, validation


@dataclass
class Session:
    """The model being trained and all that a checkpoint saves with it."""

    hyper: Hyperparameters
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: Any
    device: torch.device
    frozen_norm: bool
    progress: Progress

    @property
    def use_amp(self) -> bool:
        return self.device.type == "cuda"

    def train_mode(self) -> None:
        self.model.train()
        if self.frozen_norm:
            models.freeze_batch_norm(self.model)

    def step(
        self, images: list[torch.Tensor], image_targets: list[dict[str, torch.Tensor]], share: float
    ) -> float:
        """One optimisation step at ``share`` (0..1) of the schedule; returns the loss."""
        factor = learning_rate_factor(share, self.progress.iterations)
        for group in self.optimizer.param_groups:
            group["lr"] = self.hyper.learning_rate * factor
        device = self.device
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=self.use_amp):
            loss_parts = self.model(
                [image.to(device, non_blocking=True) for image in images],
                [{key: value.to(device) for key, value in t.items()} for t in image_targets],
            )
            loss = sum(loss_parts.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.model.parameters(), GRADIENT_CLIP)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.progress.iterations += 1
        return float(loss.detach())

    def save_checkpoint(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        state = {
            "run": _run_identity(self.hyper),
            "progress": asdict(self.progress),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
        }
        # Written aside, then renamed: an interruption mid-write leaves the last one whole.
        partial = folder / (CHECKPOINT_FILE + ".partial")
        torch.save(state, partial)
        partial.replace(folder / CHECKPOINT_FILE)

    def resume(self, folder: Path) -> None:
        path = folder / CHECKPOINT_FILE
        if not path.is_file():
            return
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("run") != _run_identity(self.hyper):
            print(f"checkpoint: {path} is another model's; starting afresh", flush=True)
            return
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scaler.load_state_dict(saved["scaler"])
        self.progress = Progress(**saved["progress"])
        print(f"checkpoint: resuming after epoch {self.progress.epochs_done}", flush=True)


def start_session(hyper: Hyperparameters, weights_channel: Path | None) -> Session:
    """The model built, started from COCO weights if given, and resumed from a checkpoint."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = models.build(
        hyper.detector,
        num_classes=hyper.num_classes,
        image_size=hyper.image_size,
        max_detections=hyper.max_detections,
    )
    frozen_norm = False
    weights = _weights_file(weights_channel)
    if weights is not None:
        fresh = models.load_pretrained(model, weights)
        frozen_norm = models.DETECTORS[hyper.detector].freeze_norm_when_pretrained
        if frozen_norm:
            models.freeze_batch_norm(model)
        print(f"weights: {weights.name}; trained afresh: {', '.join(fresh) or 'none'}", flush=True)
    else:
        print("weights: none, training from scratch", flush=True)
    model.to(device)
    session = Session(
        hyper=hyper,
        model=model,
        optimizer=make_optimizer(hyper, model),
        scaler=make_grad_scaler(device.type == "cuda"),
        device=device,
        frozen_norm=frozen_norm,
        progress=Progress(),
    )
    session.resume(Path(hyper.checkpoint_dir))
    return session


def _weights_file(channel: Path | None) -> Path | None:
    if channel is None or not channel.is_dir():
        return None
    files = sorted(channel.glob("*.pth"))
    if len(files) != 1:
        found = ", ".join(file.name for file in files) or "none"
        raise targets.DataError(f"the weights channel needs exactly one .pth file, found {found}")
    return files[0]


def _run_identity(hyper: Hyperparameters) -> dict[str, Any]:
    # A checkpoint is resumed only by a run that trains the same model on the same task.
    return {"detector": hyper.detector, "num_classes": hyper.num_classes}


def write_model(folder: Path, model: nn.Module, hyper: Hyperparameters) -> None:
    """Save what inference.model_fn loads: the weights, their description and the code."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(
        {key: value.cpu() for key, value in model.state_dict().items()}, folder / WEIGHTS_FILE
    )
    description = {
        "format": MODEL_FORMAT,
        "detector": hyper.detector,
        "num_classes": hyper.num_classes,
        "image_size": hyper.image_size,
        "max_detections": hyper.max_detections,
        "label_attribute": hyper.label_attribute,
    }
    (folder / DESCRIPTION_FILE).write_text(
        json.dumps(description, indent=2) + "\n", encoding="utf-8"
    )
    source.copy_inference_code(folder / "code")


if __name__ == "__main__":
    sys.exit(main())
