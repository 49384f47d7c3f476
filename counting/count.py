"""``counting count`` and ``counting invoke``: count the objects an endpoint found in an image.

``count`` reads a response saved earlier (an InvokeEndpoint body or a batch transform
output file); ``invoke`` asks a deployed endpoint. Both print the same JSON.
"""

# Pillow and boto3 are imported inside the handlers: every command group is imported to build
# the parser, and `counting --help` or another group's command should not pay for them.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import json
from pathlib import Path

from counting_core.constants import (
    DEFAULT_SCORE_THRESHOLD,
    IMAGE_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    SERVERLESS_MAX_PAYLOAD_BYTES,
)
from counting_core.errors import InputError
from counting_core.predictions import Detection, check_threshold, count_detections, parse_response


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
        "--image", type=Path, help="the image the response is for: adds boxes in pixels"
    )
    _add_counting_options(count)
    count.set_defaults(handler=_count)

    invoke = subparsers.add_parser(
        "invoke",
        help="send an image to an endpoint and count what it finds",
        description=(
            "Send a JPEG or PNG image to an Object Detection endpoint and print the count as "
            f"JSON. Images over {SERVERLESS_MAX_PAYLOAD_BYTES} bytes, the serverless "
            "payload limit, are sent as a smaller JPEG."
        ),
    )
    invoke.add_argument("--endpoint", required=True, metavar="NAME", help="endpoint name")
    invoke.add_argument("image", type=Path, metavar="IMAGE", help="JPEG or PNG image")
    invoke.add_argument("--region", help="AWS Region (default: from the AWS configuration)")
    _add_counting_options(invoke)
    invoke.set_defaults(handler=_invoke)


def _add_counting_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_SCORE_THRESHOLD,
        metavar="T",
        help=f"count detections scoring at least T, in [0, 1] (default {DEFAULT_SCORE_THRESHOLD})",
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


def _count(args: argparse.Namespace) -> int:
    check_threshold(args.threshold)
    if args.annotate is not None and args.image is None:
        raise InputError("--annotate needs --image: the boxes are drawn on that image")
    class_map = _read_class_map(args.class_map)
    detections = parse_response(args.predictions.read_bytes())
    image = None if args.image is None else args.image.read_bytes()
    _report(detections, image, class_map, args)
    return 0


def _invoke(args: argparse.Namespace) -> int:
    from counting_core.images import fit_payload

    check_threshold(args.threshold)
    class_map = _read_class_map(args.class_map)
    image = args.image.read_bytes()
    payload = fit_payload(image, SERVERLESS_MAX_PAYLOAD_BYTES)
    body = _invoke_endpoint(args.endpoint, payload, args.region)
    _report(parse_response(body), image, class_map, args)
    return 0


def _report(
    detections: list[Detection],
    image: bytes | None,
    class_map: dict[str, str] | None,
    args: argparse.Namespace,
) -> None:
    """Print the count as JSON and write the annotated image if asked."""
    from counting_core.images import image_size

    result = count_detections(
        detections,
        threshold=args.threshold,
        class_map=class_map,
        image_size=None if image is None else image_size(image),
    )
    print(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    if args.annotate is not None and image is not None:
        from counting_core.annotate import annotate

        args.annotate.write_bytes(annotate(image, result.detections))


def _invoke_endpoint(endpoint: str, payload: bytes, region: str | None) -> bytes:
    from counting import aws

    with aws.reported(f"endpoint {endpoint}", doing=f"call endpoint {endpoint}"):
        response = aws.client("sagemaker-runtime", region).invoke_endpoint(
            EndpointName=endpoint,
            ContentType=IMAGE_CONTENT_TYPE,
            Accept=JSON_CONTENT_TYPE,
            Body=payload,
        )
        return response["Body"].read()


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
