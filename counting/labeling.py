"""``counting labeling start``: check a labeling request here, then upload it to start the job.

The upload under ``labeling/requests/`` is what starts a Ground Truth job: the deployed
launcher picks it up, and writes ``<name>.rejected.json`` beside it if it cannot start it.
With ``--studio`` the evaluation's review queue goes to the stage's Label Studio instead:
the model's boxes on each image, uploaded under ``labeling/studio/reviews/``, which the
studio project function puts on the images' tasks as predictions (the load balancer's
sign-in keeps this command from calling Label Studio itself). A request that fails the
same checks here is refused before anything is uploaded.
"""

# boto3 is imported inside the handler: every command group is imported to build the
# parser, and `counting --help` or another group's command should not pay for it.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import json
from pathlib import Path

from counting.options import add_bucket_option, bucket_name
from counting_core import json_input, layout
from counting_core.datasets import label_studio_project, labeling
from counting_core.errors import InputError
from counting_core.models import evaluation


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser(
        "labeling", help="start labeling: Ground Truth jobs, or review queues in the studio"
    )
    commands = group.add_subparsers(dest="labeling_command", required=True)
    start = commands.add_parser(
        "start",
        help="check a labeling request and upload it, which starts the job",
        description=(
            f"Check REQUEST.json and upload it under s3://BUCKET/{layout.LABELING_REQUESTS}; "
            "the deployed launcher starts the Ground Truth labeling job. Or, with --studio, "
            "upload the review queue of --from-evaluation under "
            f"s3://BUCKET/{layout.STUDIO_REVIEWS}: the stage's Label Studio shows labelers "
            "the model's boxes on those images. Prints the upload's S3 URI."
        ),
    )
    add_bucket_option(start)
    tool = start.add_mutually_exclusive_group(required=True)
    tool.add_argument(
        "--request", type=Path, metavar="REQUEST.json", help="a Ground Truth labeling request"
    )
    tool.add_argument(
        "--studio",
        action="store_true",
        help="send the review queue to the stage's Label Studio (labeling.studio.enabled), "
        "pre-labeled with the model's detections",
    )
    start.add_argument(
        "--from-evaluation",
        type=Path,
        metavar="EVALUATION.json",
        help="the images a training run's evaluation found hardest to count (its review "
        "queue): with --request, first copied into the request's image_prefix so the job "
        "labels them again; with --studio, their tasks get the model's boxes",
    )
    start.add_argument(
        "--model-version",
        metavar="NAME",
        help="with --studio: the name the predictions go under (default: the evaluation's run)",
    )
    start.add_argument("--region", help="AWS Region (default: from the AWS configuration)")
    start.set_defaults(handler=_start)


def _start(args: argparse.Namespace) -> int:
    args.bucket = bucket_name(args.bucket)
    if args.studio:
        return _review_in_studio(args)
    if args.model_version is not None:
        raise InputError("--model-version names the predictions of --studio")
    try:
        request = labeling.parse_request_json(args.request.read_bytes(), bucket=args.bucket)
    except InputError as error:
        raise InputError(f"{args.request}: {error}") from None
    copies = []
    if args.from_evaluation is not None:
        try:
            report = json_input.loads(args.from_evaluation.read_bytes())
            copies = evaluation.relabeling_copies(report, request.image_prefix)
        except InputError as error:
            raise InputError(f"{args.from_evaluation}: {error}") from None
    key = f"{layout.LABELING_REQUESTS}{request.batch_name}{labeling.REQUEST_SUFFIX}"
    body = request.model_dump_json(exclude_none=True, indent=2)
    # The images first: the upload of the request starts the job, which lists them.
    _copy(copies, args.bucket, args.region)
    _upload(args.bucket, key, body.encode("utf-8"), args.region)
    printed: dict[str, str | int] = {"request": f"s3://{args.bucket}/{key}"}
    if args.from_evaluation is not None:
        printed["images_copied"] = len(copies)
    print(json.dumps(printed, indent=2))
    return 0


def _review_in_studio(args: argparse.Namespace) -> int:
    if args.from_evaluation is None:
        raise InputError("--studio sends an evaluation's review queue: give --from-evaluation")
    try:
        review = label_studio_project.review_request(
            json_input.loads(args.from_evaluation.read_bytes()),
            bucket=args.bucket,
            model_version=args.model_version,
        )
    except InputError as error:
        raise InputError(f"{args.from_evaluation}: {error}") from None
    key = label_studio_project.review_request_key(review.model_version)
    _upload(args.bucket, key, review.model_dump_json(indent=2).encode("utf-8"), args.region)
    outcome = f"s3://{args.bucket}/{key.removesuffix(label_studio_project.REVIEW_REQUEST_SUFFIX)}"
    printed = {
        "review": f"s3://{args.bucket}/{key}",
        "model_version": review.model_version,
        "images": len(review.predictions),
        "outcome": f"{outcome}.imported.json, or .rejected.json with the reason",
    }
    print(json.dumps(printed, indent=2))
    return 0


def _copy(copies: list[tuple[str, str, str]], bucket: str, region: str | None) -> None:
    from counting import aws

    if not copies:
        return
    s3 = aws.client("s3", region)
    for source_bucket, source_key, key in copies:
        source = f"s3://{source_bucket}/{source_key}"
        with aws.reported(source, doing=f"copy {source} to s3://{bucket}/{key}"):
            s3.copy_object(
                Bucket=bucket, Key=key, CopySource={"Bucket": source_bucket, "Key": source_key}
            )


def _upload(bucket: str, key: str, body: bytes, region: str | None) -> None:
    from counting import aws

    with aws.reported(f"s3://{bucket}/{key}", doing=f"upload s3://{bucket}/{key}"):
        aws.client("s3", region).put_object(
            Bucket=bucket, Key=key, Body=body, ContentType="application/json"
        )
