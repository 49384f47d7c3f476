"""``counting count`` and ``counting invoke``: count the objects an endpoint found in an image.

``count`` reads a response saved earlier (an InvokeEndpoint body or a batch transform
output file); ``invoke`` asks a deployed endpoint, the image whole or in tiles
(``counting_core.imaging.tiling``). Both print the same JSON; ``invoke`` adds how it asked.
"""

# Pillow and boto3 are imported inside the handlers: every command group is imported to build
# the parser, and `counting --help` or another group's command should not pay for them.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from counting.options import (
    png_name,
    warn_of_unnamed_class_ids,
    write_file,
)
from counting_core.constants import (
    DEFAULT_IMAGE_SHAPE,
    DEFAULT_PAYLOAD_SCALE,
    DEFAULT_SCORE_THRESHOLD,
    IMAGE_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
)
from counting_core.counts.predictions import (
    Detection,
    check_threshold,
    count_detections,
    parse_response,
    unnamed_class_ids,
)
from counting_core.errors import InputError, describe_validation_error
from counting_core.imaging.tiling import (
    DEFAULT_OVERLAP,
    MERGE_METHODS,
    TILING_MODES,
    TilingPolicy,
    TilingRecord,
)
from counting_core.models.model_record import ActiveModel, ScoreThreshold, score_threshold
from counting_core.uploads.cold_start import call_until_ready

if TYPE_CHECKING:  # only annotated: detection imports Pillow
    from counting_core.imaging.detection import ImageDetections

# Tiles of one image in flight at once: a share of the endpoint's MaxConcurrency (6 by
# default) that leaves the counter's calls room; botocore's retries absorb a throttle.
DEFAULT_TILE_CONCURRENCY = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    count = subparsers.add_parser(
        "count",
        help="count the detections in a saved endpoint response",
        description="Count the detections in a saved endpoint response and print them as JSON.",
    )
    count.add_argument(
        "predictions",
        type=Path,
        metavar="PREDICTIONS.json",
        help="an endpoint response or batch transform output file",
    )
    count.add_argument(
        "--image",
        type=Path,
        metavar="IMAGE",
        help="the image the response is for: adds boxes in pixels",
    )
    _add_counting_options(count)
    count.set_defaults(handler=_count)

    invoke = subparsers.add_parser(
        "invoke",
        help="send an image to an endpoint and count what it finds",
        description=(
            "Send a JPEG or PNG image to an Object Detection endpoint and print the count as "
            "JSON. The image is sent as a JPEG at most "
            f"{DEFAULT_IMAGE_SHAPE * DEFAULT_PAYLOAD_SCALE} pixels on its longest side, as the "
            "counter Lambda sends it."
        ),
    )
    invoke.add_argument(
        "--endpoint", metavar="NAME", help="endpoint name (default: the --model-record's)"
    )
    invoke.add_argument("image", type=Path, metavar="IMAGE", help="JPEG or PNG image")
    invoke.add_argument("--region", help="AWS Region (default: from the AWS configuration)")
    _add_counting_options(invoke)
    invoke.add_argument(
        "--tiling",
        choices=TILING_MODES,
        default="off",
        help="off: send the image whole, scaled (default); on: send overlapping tiles at "
        "native resolution and merge the boxes across tile borders; auto: tile when the "
        "image's shorter side exceeds 3 times the model's input side",
    )
    invoke.add_argument(
        "--tile-size",
        type=int,
        metavar="PIXELS",
        help="tile side (default: the model's input side, the --model-record's or "
        f"{DEFAULT_IMAGE_SHAPE})",
    )
    invoke.add_argument(
        "--tile-overlap",
        type=float,
        default=DEFAULT_OVERLAP,
        metavar="FRACTION",
        help=f"overlap of neighbouring tiles, a fraction of the tile (default {DEFAULT_OVERLAP})",
    )
    invoke.add_argument(
        "--merge",
        choices=MERGE_METHODS,
        default="merge",
        help="how boxes seen by several tiles become one: merge (default; pieces of objects "
        "cut by a tile border join the whole) or nms (suppression on overlap)",
    )
    invoke.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_TILE_CONCURRENCY,
        metavar="N",
        help=f"tiles sent at once (default {DEFAULT_TILE_CONCURRENCY})",
    )
    invoke.set_defaults(handler=_invoke)


def _add_counting_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threshold",
        type=float,
        metavar="T",
        help="count detections scoring at least T, in [0, 1] (default: the threshold "
        f"calibrated for the --model-record's model, else {DEFAULT_SCORE_THRESHOLD})",
    )
    parser.add_argument(
        "--model-record",
        type=Path,
        metavar="MODEL.json",
        help="the active-model record (SSM parameter /<prefix>/active-model): its calibrated "
        "threshold, class names and endpoint",
    )
    parser.add_argument(
        "--class-map",
        type=Path,
        metavar="CLASSMAP.json",
        help='class names: {"0": "car", ...}, or a Ground Truth object with a "class-map"',
    )
    parser.add_argument(
        "--annotate", type=Path, metavar="OUT.png", help="also write the image with boxes drawn"
    )


@dataclasses.dataclass(frozen=True)
class _Counting:
    """What the options settle: the record given (if any), the threshold, the class names
    and where they came from."""

    record: ActiveModel | None
    threshold: ScoreThreshold
    class_map: dict[str, str] | None
    class_map_source: str


def _count(args: argparse.Namespace) -> int:
    from counting_core.imaging.images import image_size

    png_name(args.annotate, option="--annotate")
    counting = _counting(args)
    if args.annotate is not None and args.image is None:
        raise InputError("--annotate needs --image: the boxes are drawn on that image")
    response = parse_response(args.predictions.read_bytes())
    image = None if args.image is None else args.image.read_bytes()
    _report(
        response.detections,
        image_size=None if image is None else image_size(image),
        capped=(
            _capped_warning(len(response.detections), response.max_detections)
            if response.capped
            else None
        ),
        image=image,
        counting=counting,
        annotate_to=args.annotate,
    )
    return 0


def _invoke(args: argparse.Namespace) -> int:
    from counting_core.imaging.detection import detect

    png_name(args.annotate, option="--annotate")
    counting = _counting(args)
    endpoint = args.endpoint or (counting.record.endpoint_name if counting.record else None)
    if endpoint is None:
        raise InputError("name the endpoint: --endpoint NAME or --model-record MODEL.json")
    policy = TilingPolicy(
        mode=args.tiling, tile_side=args.tile_size, overlap=args.tile_overlap, merge=args.merge
    )
    if args.concurrency < 1:
        raise InputError(f"--concurrency must be at least 1, got {args.concurrency}")
    image = args.image.read_bytes()
    shape = (counting.record.image_shape if counting.record else None) or DEFAULT_IMAGE_SHAPE
    with endpoint_invoker(endpoint, args.region) as invoke:
        # Untiled, scaled as the counter Lambda scales it: to twice the model's image_shape.
        found = detect(
            image,
            invoke=invoke,
            concurrency=args.concurrency,
            policy=policy,
            image_shape=shape,
            payload_scale=DEFAULT_PAYLOAD_SCALE,
            tiling_measured=counting.record.tiling_measured if counting.record else None,
        )
    if found.tiling.tiles:
        # A tiled count takes the threshold calibrated on tiled counts, when there is one.
        tiled = score_threshold(counting.record, args.threshold, tiled=True)
        counting = dataclasses.replace(counting, threshold=tiled)
    _report(
        found.detections,
        image_size=found.image_size,
        capped=_tiles_capped_warning(found) if found.capped else None,
        image=image,
        counting=counting,
        annotate_to=args.annotate,
        tiling=found.tiling,
    )
    return 0


def _capped_warning(returned: int, cap: int | None) -> str:
    return (
        f"the model returned {returned} detections and its cap is {cap} (max_detections), "
        "so the image may hold more objects than counted; raise max_detections or count it "
        "in tiles"
    )


def _tiles_capped_warning(found: ImageDetections) -> str:
    record = found.tiling
    if not record.tiles:
        return _capped_warning(len(found.detections), record.max_detections)
    return (
        f"{record.capped_calls} of {record.endpoint_calls} requests returned as many "
        f"detections as the model's cap ({record.max_detections}, max_detections), so the "
        "image may hold more objects than counted; raise max_detections or use smaller tiles "
        "(--tile-size)"
    )


def _report(
    detections: Sequence[Detection],
    *,
    image_size: tuple[int, int] | None,
    capped: str | None,
    image: bytes | None,
    counting: _Counting,
    annotate_to: Path | None,
    tiling: TilingRecord | None = None,
) -> None:
    """Print the count as JSON (with how the endpoint was asked, if given), warn on stderr
    with ``capped`` when the count is at the model's cap, annotate the image if asked."""
    result = count_detections(
        detections,
        threshold=counting.threshold.value,
        threshold_origin=counting.threshold.origin,
        class_map=counting.class_map,
        image_size=image_size,
        capped=capped is not None,
    )
    unnamed = unnamed_class_ids((d.class_id for d in result.detections), counting.class_map)
    document = {**result.to_dict(), "unnamed_class_ids": unnamed}
    if tiling is not None:
        document["tiling"] = tiling.to_dict()
    print(json.dumps(document, indent=2, sort_keys=True))
    if counting.class_map:
        warn_of_unnamed_class_ids(unnamed, counting.class_map, counting.class_map_source)
    if capped is not None:
        print(f"counting: warning: capped: {capped}", file=sys.stderr)
    if annotate_to is not None and image is not None:
        from counting_core.imaging.annotate import annotate

        write_file(annotate_to, annotate(image, result.detections, result))


def _counting(args: argparse.Namespace) -> _Counting:
    """Read ``--model-record``; ``--threshold`` and ``--class-map`` win over what it says."""
    record = None
    if args.model_record is not None:
        try:
            record = ActiveModel.model_validate_json(args.model_record.read_bytes())
        except ValidationError as error:
            problem = describe_validation_error(error)[0]
            raise InputError(
                f"{args.model_record}: not an active-model record: {problem}"
            ) from None
    if args.threshold is not None:
        check_threshold(args.threshold)
    class_map = _read_class_map(args.class_map)
    source = str(args.class_map)
    if not class_map and record is not None:
        class_map, source = record.class_map, f"the class map of {args.model_record}"
    threshold = score_threshold(record, args.threshold)
    return _Counting(record, threshold, class_map or None, source)


@contextmanager
def endpoint_invoker(endpoint: str, region: str | None) -> Iterator[Callable[[bytes], bytes]]:
    """A function sending one JPEG to ``endpoint`` and returning the answer's body; AWS errors
    raised in the block become one-line ``AwsFailure``s. Callable from several threads
    (boto3's clients are thread-safe)."""
    from counting import aws

    def waiting(seconds: float) -> None:
        print(
            f"endpoint {endpoint} is starting (ModelNotReadyException): "
            f"asking again in {seconds:g} s",
            file=sys.stderr,
        )

    runtime = aws.client("sagemaker-runtime", region)

    def invoke(payload: bytes) -> bytes:
        # A serverless endpoint idle for a while starts cold: wait for it as the counter does.
        response = call_until_ready(
            lambda: runtime.invoke_endpoint(
                EndpointName=endpoint,
                ContentType=IMAGE_CONTENT_TYPE,
                Accept=JSON_CONTENT_TYPE,
                Body=payload,
            ),
            on_wait=waiting,
        )
        body: bytes = response["Body"].read()
        return body

    with aws.reported(f"endpoint {endpoint}", doing=f"call endpoint {endpoint}"):
        yield invoke


def _read_class_map(path: Path | None) -> dict[str, str] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as error:
        raise InputError(f"{path}: not JSON: {error}") from None
    if isinstance(data, dict) and "class-map" in data:
        data = data["class-map"]
    if not isinstance(data, dict) or not data:
        raise InputError(f'{path}: expected a class map object like {{"0": "car"}}')
    for key, name in data.items():
        if not (key.isascii() and key.isdigit() and str(int(key)) == key):
            raise InputError(f'{path}: class id {key!r} is not a whole number like "0"')
        if not isinstance(name, str):
            raise InputError(f"{path}: the name of class {key} must be text, got {name!r}")
    return data
