"""``counting evaluate``: measure a model's count error offline, as a training run does.

Reads a labeled validation manifest and a folder of endpoint responses, one per image,
named after the image's file plus ``.out`` (Batch Transform's naming) or ``.json``; prints
the same report the training run writes as ``evaluation.json``, and can draw
``evaluation.png``. The figures come from ``counting_core.models.evaluation`` (definitions there).
"""

# Pillow is imported only to draw: every command group is imported to build the parser.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from counting.options import png_name, warn_of_unnamed_class_ids, write_file
from counting_core.counts.predictions import parse_response, unnamed_class_ids
from counting_core.counts.responses import match_responses, responses_of
from counting_core.datasets.manifest import read_manifest
from counting_core.errors import InputError
from counting_core.models import evaluation


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="measure count error against a labeled validation manifest",
        description=(
            "Compare the counts in saved endpoint responses with the labeled counts of a "
            "validation manifest, at each threshold, and print the report as JSON."
        ),
    )
    parser.add_argument(
        "--manifest",
        required=True,
        type=Path,
        metavar="MANIFEST",
        help="the labeled validation manifest",
    )
    parser.add_argument(
        "--predictions-dir",
        required=True,
        type=Path,
        metavar="DIR",
        help="one response per image: <image file name>.out or <image file name>.json",
    )
    parser.add_argument(
        "--thresholds",
        metavar="T1,T2,...",
        help="thresholds to try (default 0.05, 0.10, ... 0.95)",
    )
    parser.add_argument(
        "--label-attribute", metavar="NAME", help="the manifest's label attribute, if several"
    )
    parser.add_argument("--plot", type=Path, metavar="OUT.png", help="also draw the report")
    parser.add_argument(
        "--max-wape",
        type=float,
        metavar="FRACTION",
        help="the count gate (training.max_count_wape), drawn on the plot's WAPE scale",
    )
    parser.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    png_name(args.plot, option="--plot")
    if args.max_wape is not None and not args.max_wape > 0:
        raise InputError(f"--max-wape: {args.max_wape:g} is not a fraction above 0")
    thresholds = (
        evaluation.DEFAULT_THRESHOLDS
        if args.thresholds is None
        else evaluation.parse_thresholds(args.thresholds)
    )
    try:
        with args.manifest.open("rb") as file:
            records = read_manifest(file)
        images, class_map, failed = evaluation.labeled_images(records, args.label_attribute)
    except InputError as error:
        raise InputError(f"{args.manifest}: {error}") from None
    if not args.predictions_dir.is_dir():
        raise InputError(f"{args.predictions_dir}: not a folder")
    names = [
        path.relative_to(args.predictions_dir).as_posix()
        for path in sorted(args.predictions_dir.rglob("*"))
        if path.is_file()
    ]
    matched, left_over = match_responses(images, names)
    of_failed = responses_of(failed, left_over)
    for name in left_over:
        why = (
            f"the manifest lists {of_failed[name]} as a failed item (no label to score against)"
            if name in of_failed
            else "no image of the manifest has this name"
        )
        print(f"counting: warning: {name}: {why}; not scored", file=sys.stderr)
    responses = {}
    for source_ref, name in matched.items():
        try:
            responses[source_ref] = parse_response((args.predictions_dir / name).read_bytes())
        except InputError as error:
            raise InputError(f"{args.predictions_dir / name}: {error}") from None
    result = evaluation.evaluate(images, responses, class_map=class_map, thresholds=thresholds)
    # Classes found at any threshold tried (the lowest counts the most).
    found = (
        detection.class_id
        for response in responses.values()
        for detection in response.detections
        if detection.score >= min(thresholds)
    )
    unnamed = unnamed_class_ids(found, class_map)
    print(json.dumps({**result.to_dict(), "unnamed_class_ids": unnamed}, indent=2))
    warn_of_unnamed_class_ids(unnamed, class_map, f"the class map of {args.manifest}")
    if args.plot is not None:
        from counting_core.models.evaluation_plot import plot

        write_file(args.plot, plot(result, max_wape=args.max_wape))
    return 0
