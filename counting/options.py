"""What several commands take or say alike: a bucket by name or URI, the stage a data bucket
is, and class ids a class map does not name.

A command given the data bucket finds the rest of its stage by the bucket's name
(``counting_core.stage_names``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from counting_core import stage_names
from counting_core.datasets.manifest import split_s3_uri
from counting_core.errors import InputError
from counting_core.models import training


def add_bucket_option(parser: argparse.ArgumentParser) -> None:
    """``--bucket BUCKET``, the data bucket, as every command that takes it names it."""
    parser.add_argument(
        "--bucket",
        required=True,
        metavar="BUCKET",
        help="the data bucket (DataBucketName output), by name or as s3://BUCKET",
    )


def add_split_options(parser: argparse.ArgumentParser, *, seed_help: str) -> None:
    """``--validation-fraction`` and ``--seed``, defaulting to the pipeline's
    (training.validation_fraction, training.split_seed), as every command that splits."""
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=training.DEFAULT_VALIDATION_FRACTION,
        metavar="FRACTION",
        help="share of usable images for validation, between 0 and 1 (default: the "
        "pipeline's, %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=training.DEFAULT_SPLIT_SEED,
        metavar="SEED",
        help=f"{seed_help} (default: the pipeline's, %(default)s)",
    )


def bucket_name(value: str, *, option: str = "--bucket") -> str:
    """A bucket given by name or as ``s3://name`` (``/`` after it allowed)."""
    location = split_s3_uri(value if value.startswith("s3://") else f"s3://{value}")
    if location is None or location[1]:
        raise InputError(f"{option}: {value!r} is not a bucket name or s3://bucket URI")
    return location[0]


def stage_of(
    bucket: str, *, option: str, otherwise: str | None = "give --state-machine-arn"
) -> stage_names.Stage:
    """The stage whose data bucket ``bucket`` is; InputError naming ``option`` if none, and
    what the command takes ``otherwise`` (None for a command with no other way)."""
    stage = stage_names.stage_of_data_bucket(bucket)
    if stage is None:
        raise InputError(
            f"{option}: {bucket} is not named like an app's data bucket "
            "(<project>-<stage>-data-<account>-<region>)" + (f"; {otherwise}" if otherwise else "")
        )
    return stage


def png_name(path: Path | None, *, option: str) -> Path | None:
    """``path``, if named ``.png`` (any letter case): the pictures this CLI draws are PNG, and
    PNG data under a .jpg or .svg name is a file viewers and uploads misread."""
    if path is not None and path.suffix.lower() != ".png":
        raise InputError(
            f"{option}: {path}: the picture is a PNG image; give it a name ending in .png"
        )
    return path


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, making its folder first, as ``--out-dir`` folders are made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def warn_of_unnamed_class_ids(
    unnamed: list[int], class_map: Mapping[str, str], source: str
) -> None:
    """Say on stderr that ``source``'s class map lacks ``unnamed``: a one-class model cannot
    find class 1, so a detection the map does not name means the map (or model) is wrong."""
    if not unnamed:
        return
    ids = ("class id " if len(unnamed) == 1 else "class ids ") + ", ".join(map(str, unnamed))
    classes = f"{len(class_map)} class" + ("" if len(class_map) == 1 else "es")
    under = "its number" if len(unnamed) == 1 else "their numbers"
    print(
        f"counting: warning: {source} does not name {ids} (it names {classes}): counted under "
        f"{under}; is it this model's class map?",
        file=sys.stderr,
    )
