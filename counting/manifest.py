"""``counting manifest``: check, count, split and import labeled-image manifests offline.

``stats`` and ``split`` read a Ground Truth output manifest; ``from-coco`` writes one
from a COCO export, so boxes drawn in CVAT or Label Studio train the same way.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from counting_core import manifest
from counting_core.coco import coco_to_manifest, normalise_image_prefix
from counting_core.errors import InputError

TRAIN_FILE = "train.manifest"
VALIDATION_FILE = "validation.manifest"
# Ground Truth's creation-date format.
CREATION_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser(
        "manifest", help="check, count, split and import labeled-image manifests"
    )
    commands = group.add_subparsers(dest="manifest_command", required=True)
    _register_stats(commands)
    _register_split(commands)
    _register_from_coco(commands)


def run_stats(args: argparse.Namespace) -> int:
    _check_label_attribute(args)
    with _about(args.manifest):
        figures = manifest.stats(_read_records(args.manifest), args.label_attribute)
    _print_json(figures)
    return 0


def run_split(args: argparse.Namespace) -> int:
    _check_label_attribute(args)
    manifest.check_validation_fraction(args.validation_fraction)
    with _about(args.manifest):
        result = manifest.split(
            _read_records(args.manifest),
            label_attribute=args.label_attribute,
            validation_fraction=args.validation_fraction,
            seed=args.seed,
        )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / TRAIN_FILE).write_text(manifest.manifest_text(result.train), "utf-8")
    (args.out_dir / VALIDATION_FILE).write_text(manifest.manifest_text(result.validation), "utf-8")
    _print_json(result.figures())
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
        )
    args.out.write_text(manifest.manifest_text(conversion.lines), "utf-8")
    _print_json({**conversion.summary(), "out": str(args.out)})
    return 0


def _register_stats(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "stats", help="count images, failed and empty items, and boxes per class"
    )
    parser.add_argument("manifest", type=Path, help="a Ground Truth output manifest")
    _add_label_attribute(parser)
    parser.set_defaults(handler=run_stats)


def _register_split(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "split", help=f"write {TRAIN_FILE} and {VALIDATION_FILE} for the training job"
    )
    parser.add_argument("manifest", type=Path, help="a Ground Truth output manifest")
    parser.add_argument(
        "--validation-fraction",
        type=float,
        required=True,
        help="share of usable images for validation, between 0 and 1",
    )
    parser.add_argument(
        "--seed", type=int, required=True, help="shuffle seed (same seed, same split)"
    )
    parser.add_argument("--out-dir", type=Path, required=True, help="directory to write into")
    _add_label_attribute(parser)
    parser.set_defaults(handler=run_split)


def _register_from_coco(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("from-coco", help="write a manifest from a COCO detection export")
    parser.add_argument("coco", type=Path, help="COCO JSON file (CVAT, Label Studio)")
    parser.add_argument(
        "--image-prefix", required=True, help="s3:// URI that file_name values are relative to"
    )
    parser.add_argument(
        "--label-attribute", required=True, help="label attribute to write the boxes under"
    )
    parser.add_argument("--out", type=Path, required=True, help="manifest file to write")
    parser.add_argument("--job-name", help="job-name to record (default: the label attribute)")
    parser.set_defaults(handler=run_from_coco)


def _add_label_attribute(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--label-attribute", help="the boxes' key in each line (default: found in the manifest)"
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
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error.reason})") from None


def _read_records(path: Path) -> list[manifest.Record]:
    # utf-8-sig: a byte-order mark left by a Windows editor is not part of line 1's JSON.
    with path.open(encoding="utf-8-sig") as file:
        return manifest.parse_manifest(file)


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8-sig") as file:
        try:
            return json.load(file)
        except json.JSONDecodeError as error:
            raise InputError(
                f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
            ) from None


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))
