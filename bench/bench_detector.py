"""Measure the torchvision detector on this machine: count error after a 10-minute CPU
training run against the predict-the-training-mean baseline, CPU latency per 512 px image
through inference.py on 1 and 2 threads, and the model's size. Prints each figure beside its
goal, as bench_counting.py does.

Run from the repository after ``make detector``: ``.venv/bin/python bench/bench_detector.py``
(about 13 minutes; ``--minutes`` shortens the training). The data are synthetic scenes the
project generates (detector.scenes: four classes, 0-60 objects from 16 px, overlap,
clutter): 250 to train, 50 to validate (mAP, and the count threshold is chosen on them), 50
held out that only the final figures see. Trained from scratch: no COCO weights can be
downloaded here.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # works from a checkout, installed or not

# These imports need the path set above, hence E402.
import torch  # noqa: E402

import counting  # noqa: E402
from counting_core.counts.predictions import parse_response  # noqa: E402
from counting_core.datasets.manifest import read_manifest  # noqa: E402
from counting_core.models.evaluation import DEFAULT_THRESHOLDS, LabeledImage, evaluate  # noqa: E402
from detector import inference, models, scenes  # noqa: E402
from detector.metrics import ImageBoxes, mean_average_precision  # noqa: E402

TRAIN_IMAGES, VALIDATION_IMAGES, HELD_OUT_IMAGES = 250, 50, 50
SCENE_SIZE = 512
DETECTOR = models.DEFAULT_DETECTOR
LATENCY_IMAGES = 10
SEED = 11
# The mAP of one validation pass: images, true boxes and detections per image (a dense
# validation set at a fifth of the detection cap).
MAP_IMAGES, MAP_TRUTHS, MAP_DETECTIONS = 500, 60, 200


def scene_counts(manifest: Path) -> list[tuple[str, int]]:
    with manifest.open("rb") as file:
        records = read_manifest(file)
    return [
        (record.data["source-ref"], len(record.data[scenes.LABEL_ATTRIBUTE]["annotations"]))
        for record in records
    ]


def predict_all(model: inference.LoadedModel, images: Sequence[Path]) -> dict[str, bytes]:
    """Responses by file name, through the handlers exactly as the container calls them."""
    responses = {}
    for image in images:
        request = inference.input_fn(image.read_bytes(), "image/jpeg")
        body = inference.output_fn(inference.predict_fn(request, model), "application/json")
        responses[image.name] = body.encode()
    return responses


def count_figures(
    responses: dict[str, bytes], counts: list[tuple[str, int]], threshold: float | None
) -> tuple[float, float]:
    """(MAE, threshold): at ``threshold``, or at the one with the lowest MAE if None."""
    # Only counts matter here: every box is given class 0.
    images = [LabeledImage(ref, (0,) * count) for ref, count in counts]
    detections = {ref: parse_response(responses[ref.rsplit("/", 1)[-1]]) for ref, _ in counts}
    thresholds = DEFAULT_THRESHOLDS if threshold is None else (threshold,)
    result = evaluate(images, detections, class_map={}, thresholds=thresholds)
    return result.best.mae, result.best.threshold


def latency_ms(model: inference.LoadedModel, images: Sequence[Path], threads: int) -> float:
    torch.set_num_threads(threads)
    predict_all(model, images[:2])  # warm-up
    timings = []
    for image in images:
        started = time.perf_counter()
        predict_all(model, [image])
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def map_seconds() -> float:
    """Seconds train.py spends on mAP (IoU 0.5 and 0.5:0.95) after an epoch, on a dense
    synthetic validation set: half the detections near a true box, the rest anywhere."""
    generator = torch.Generator().manual_seed(SEED)
    truths, detections = [], []
    for _ in range(MAP_IMAGES):
        corner = torch.rand(MAP_TRUTHS, 2, generator=generator) * 480
        boxes = torch.cat(
            [corner, corner + 16 + torch.rand(MAP_TRUTHS, 2, generator=generator) * 16], 1
        )
        labels = torch.randint(1, 5, (MAP_TRUTHS,), generator=generator)
        noise = torch.randn(MAP_TRUTHS, 4, generator=generator) * 3
        stray_corner = torch.rand(MAP_DETECTIONS - MAP_TRUTHS, 2, generator=generator) * 480
        stray = torch.cat([stray_corner, stray_corner + 24], 1)
        found = torch.cat([boxes + noise, stray])
        found_labels = torch.randint(1, 5, (MAP_DETECTIONS,), generator=generator)
        scores = torch.rand(MAP_DETECTIONS, generator=generator)
        truths.append(ImageBoxes(boxes, labels))
        detections.append(ImageBoxes(found, found_labels, scores))
    started = time.perf_counter()
    mean_average_precision(detections, truths)
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args(argv)
    print(
        f"detector benchmark: torch {torch.__version__}, {os.cpu_count()} CPUs, "
        f"{platform.machine()}, {DETECTOR}, {args.minutes:g} minutes of training from scratch"
    )
    with tempfile.TemporaryDirectory(prefix="bench-detector-") as scratch:
        folder = Path(scratch)
        train = scenes.write_scenes(folder / "train", TRAIN_IMAGES, seed=SEED)
        validation = scenes.write_scenes(
            folder / "validation", VALIDATION_IMAGES, seed=SEED, first=TRAIN_IMAGES
        )
        held_out = scenes.write_scenes(
            folder / "held-out", HELD_OUT_IMAGES, seed=SEED, first=10_000
        )
        for image in validation.images.iterdir():
            image.rename(train.images / image.name)
        model_tarball = folder / "model.tar.gz"
        started = time.monotonic()
        # The epochs are many: the time budget ends the training (and its schedule).
        status = counting.main(
            [
                "detector", "train-local", "--manifest", str(train.manifest),
                "--validation-manifest", str(validation.manifest), "--images", str(train.images),
                "--out", str(model_tarball), "--detector", DETECTOR,
                "--image-size", str(SCENE_SIZE), "--epochs", "1000",
                "--minutes", str(args.minutes), "--seed", str(SEED),
            ]
        )  # fmt: skip
        if status != 0:
            return status
        training_minutes = (time.monotonic() - started) / 60
        model_dir = folder / "model"
        with tarfile.open(model_tarball) as archive:
            archive.extractall(model_dir, filter="data")
        model = inference.model_fn(str(model_dir))

        validation_counts = scene_counts(validation.manifest)
        validation_images = [train.images / ref.rsplit("/", 1)[-1] for ref, _ in validation_counts]
        _, threshold = count_figures(predict_all(model, validation_images), validation_counts, None)
        held_out_counts = scene_counts(held_out.manifest)
        held_out_images = sorted(held_out.images.glob("*.jpg"))
        model_mae, _ = count_figures(
            predict_all(model, held_out_images), held_out_counts, threshold
        )
        training_mean = statistics.mean(count for _, count in scene_counts(train.manifest))
        baseline_mae = statistics.mean(abs(count - training_mean) for _, count in held_out_counts)
        one_thread = latency_ms(model, held_out_images[:LATENCY_IMAGES], 1)
        two_threads = latency_ms(model, held_out_images[:LATENCY_IMAGES], 2)
        weights_mb = (model_dir / inference.WEIGHTS_FILE).stat().st_size / 1e6
        tarball_mb = model_tarball.stat().st_size / 1e6
        parameters = models.parameter_count(model.network) / 1e6
    mapping = map_seconds()

    rows = [
        ("training time, including the last validation (min)", training_minutes, "", None),
        (f"count MAE on {HELD_OUT_IMAGES} held-out scenes at threshold {threshold:.2f}",
         model_mae, f"< {baseline_mae:.2f}", model_mae < baseline_mae),
        (f"baseline MAE: predict the training mean ({training_mean:.1f})", baseline_mae, "", None),
        ("CPU latency per 512 px image, 1 thread (ms)", one_thread, "", None),
        ("CPU latency per 512 px image, 2 threads (ms)", two_threads, "", None),
        ("model.pth (MB)", weights_mb, "", None),
        ("model.tar.gz (MB)", tarball_mb, "", None),
        ("parameters (millions)", parameters, "", None),
        (f"mAP of a validation pass: {MAP_IMAGES} images x {MAP_DETECTIONS} detections (s)",
         mapping, "< 30", mapping < 30),
    ]  # fmt: skip
    for name, value, goal, met in rows:
        verdict = "" if met is None else ("PASS" if met else "MISS")
        shown_goal = f"goal {goal}" if goal else ""
        print(f"{name:<72} {value:>9.2f} {shown_goal:<14} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
