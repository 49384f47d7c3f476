"""``counting manifest``: check, count, split and import labeled-image manifests offline.

``stats`` and ``split`` read a Ground Truth output manifest; ``from-coco`` writes one
from a COCO export and ``from-label-studio`` from Label Studio's JSON export, so boxes
drawn in CVAT or Label Studio train the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from counting.options import add_split_options, write_file
from counting_core import json_input
from counting_core.datasets import manifest
from counting_core.datasets.coco import (
    CREATION_DATE_FORMAT,
    CocoConversion,
    coco_to_manifest,
    normalise_image_prefix,
)
from counting_core.datasets.label_studio import (
    DEFAULT_IMAGE_KEY,
    ROTATED_BOX_CHOICES,
    LabelStudioConversion,
    label_studio_to_manifest,
)
from counting_core.errors import InputError
from counting_core.models import training

TRAIN_FILE, VALIDATION_FILE = training.TRAIN_FILE, training.VALIDATION_FILE


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser(
        "manifest", help="check, count, split and import labeled-image manifests"
    )
    commands = group.add_subparsers(dest="manifest_command", required=True)
    _register_stats(commands)
    _register_split(commands)
    _register_from_coco(commands)
    _register_from_label_studio(commands)


def run_stats(args: argparse.Namespace) -> int:
    _check_label_attribute(args)
    with _about(args.manifest), args.manifest.open("rb") as file:
        figures = manifest.stats(file, args.label_attribute)
    _print_json(figures)
    return 0


def run_split(args: argparse.Namespace) -> int:
    _check_label_attribute(args)
    manifest.check_validation_fraction(args.validation_fraction)
    with _about(args.manifest), args.manifest.open("rb") as file:
        split = manifest.split(
            file,
            label_attribute=args.label_attribute,
            validation_fraction=args.validation_fraction,
            seed=args.seed,
            keep_empty=args.keep_images_without_boxes,
        )
        # Written only once the whole manifest has passed its checks.
        args.out_dir.mkdir(parents=True, exist_ok=True)
        with (
            (args.out_dir / TRAIN_FILE).open("wb") as train,
            (args.out_dir / VALIDATION_FILE).open("wb") as validation,
        ):
            split.write(train, validation)
    _print_json({**split.result.figures(), "duplicates": split.stats["duplicates"]})
    return 0


def run_from_coco(args: argparse.Namespace) -> int:
    _check_label_attribute(args)
    normalise_image_prefix(args.image_prefix)
    with _about(args.coco):
        conversion = coco_to_manifest(
            _read_json(args.coco),
            image_prefix=args.image_prefix,
            label_attribute=args.label_attribute,
            creation_date=datetime.now(UTC).strftime(CREATION_DATE_FORMAT),
            job_name=args.job_name,
            keep_empty_categories=args.keep_empty_categories,
        )
    return _write_conversion(args.coco, args.out, conversion)


def run_from_label_studio(args: argparse.Namespace) -> int:
    _check_label_attribute(args)
    if args.image_prefix is not None:
        normalise_image_prefix(args.image_prefix)
    with _about(args.export):
        conversion = label_studio_to_manifest(
            _read_json(args.export),
            label_attribute=args.label_attribute,
            creation_date=datetime.now(UTC).strftime(CREATION_DATE_FORMAT),
            image_prefix=args.image_prefix,
            job_name=args.job_name,
            class_names=args.classes,
            rotated=args.rotated,
            image_key=args.image_key,
        )
    return _write_conversion(args.export, args.out, conversion)


def _write_conversion(
    export: Path, out: Path, conversion: CocoConversion | LabelStudioConversion
) -> int:
    """Write an imported export's manifest; say what went in (stderr) and the figures."""
    write_file(out, manifest.manifest_text(conversion.lines).encode("utf-8"))
    print(f"{export}: {conversion.summary_line()}", file=sys.stderr)
    _print_json({**conversion.summary(), "out": str(out)})
    return 0


def _register_stats(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "stats", help="count images, failed and empty items, and boxes per class"
    )
    parser.add_argument(
        "manifest", type=Path, metavar="MANIFEST", help="a Ground Truth output manifest"
    )
    _add_label_attribute(parser)
    parser.set_defaults(handler=run_stats)


def _register_split(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "split", help=f"write {TRAIN_FILE} and {VALIDATION_FILE} for the training job"
    )
    parser.add_argument(
        "manifest", type=Path, metavar="MANIFEST", help="a Ground Truth output manifest"
    )
    add_split_options(parser, seed_help="shuffle seed; same seed, same split")
    parser.add_argument(
        "--out-dir", type=Path, required=True, metavar="DIR", help="the folder to write into"
    )
    parser.add_argument(
        "--keep-images-without-boxes",
        action="store_true",
        help="keep images labeled without boxes in both channels, as negatives (what Prepare "
        "does for the torchvision detector; the built-in algorithm trains on boxes only)",
    )
    _add_label_attribute(parser)
    parser.set_defaults(handler=run_split)


def _register_from_coco(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("from-coco", help="write a manifest from a COCO detection export")
    parser.add_argument(
        "coco",
        type=Path,
        metavar="COCO.json",
        help="COCO JSON file (CVAT, Roboflow, Label Studio)",
    )
    parser.add_argument(
        "--image-prefix",
        required=True,
        metavar="s3://BUCKET/PREFIX",
        help="the S3 folder that file_name values are relative to",
    )
    _add_manifest_output_options(parser)
    parser.add_argument(
        "--keep-empty-categories",
        action="store_true",
        help="give a class id to categories with no box too (default: leave them out)",
    )
    parser.set_defaults(handler=run_from_coco)


def _add_manifest_output_options(parser: argparse.ArgumentParser) -> None:
    """What a conversion into a manifest writes: where, under which label attribute and job."""
    parser.add_argument(
        "--label-attribute",
        required=True,
        metavar="NAME",
        help="label attribute to write the boxes under",
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="OUT.manifest", help="the manifest to write"
    )
    parser.add_argument("--job-name", help="job-name to record (default: the label attribute)")


def _register_from_label_studio(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    parser = commands.add_parser(
        "from-label-studio", help="write a manifest from a Label Studio JSON export"
    )
    parser.add_argument(
        "export", type=Path, metavar="EXPORT.json", help="the project's export in JSON format"
    )
    parser.add_argument(
        "--image-prefix",
        metavar="s3://BUCKET/PREFIX",
        help="the S3 folder holding the files uploaded to Label Studio, under their own names "
        "(images already given as s3:// URIs are kept as they are)",
    )
    _add_manifest_output_options(parser)
    parser.add_argument(
        "--classes",
        type=_class_names,
        metavar="NAME,NAME",
        help="comma-separated class names, in class id order (default: the labels used, "
        "sorted); a box with another label is refused",
    )
    parser.add_argument(
        "--rotated",
        choices=ROTATED_BOX_CHOICES,
        default="refuse",
        help="rotated boxes: refuse the export, naming their tasks, or enclose each in an "
        "upright box (default: %(default)s)",
    )
    parser.add_argument(
        "--image-key",
        default=DEFAULT_IMAGE_KEY,
        metavar="KEY",
        help="the task data key holding the image (the labeling interface's "
        '<Image value="$KEY">; default: %(default)s)',
    )
    parser.set_defaults(handler=run_from_label_studio)


def _class_names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",")]


def _add_label_attribute(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--label-attribute",
        metavar="NAME",
        help="the boxes' key in each line (default: found in the manifest)",
    )


def _check_label_attribute(args: argparse.Namespace) -> None:
    # Checked before the file is read so that a mistake in an argument is not blamed on it.
    if args.label_attribute is not None:
        manifest.check_label_attribute_name(args.label_attribute)


@contextmanager
def _about(path: Path) -> Iterator[None]:
    """Name ``path`` in any input error raised while reading or checking it."""
    try:
        yield
    except InputError as error:
        raise InputError(f"{path}: {error}") from None


def _read_json(path: Path) -> Any:
    return json_input.loads(path.read_bytes())


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))
