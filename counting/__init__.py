"""The ``counting`` command line: what the guide's notebook did, offline and scriptable.

Each command group lives in its own module and registers its sub-commands
with ``register(subparsers)``; heavy imports (boto3, Pillow) wait until a
command that needs them runs. Commands print JSON on stdout; bad input ends
with one line on stderr and exit status 2, an AWS call that failed or could not be made
with one line and status 3, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import metadata

from counting import bulk, count, detector, evaluate, labeling, manifest, stage, train
from counting_core.errors import InputError

EXIT_BAD_INPUT = 2
EXIT_AWS_FAILURE = 3
# What a shell reports for a program killed by SIGPIPE (128 + 13), as `counting ... | head`
# would be without Python's own handling of it.
EXIT_BROKEN_PIPE = 141
DISTRIBUTION = "sagemaker-object-counting"


class AwsFailure(Exception):
    """An AWS call that failed or could not be made; the message says which, on one line."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="counting", description="Count objects in images with a SageMaker model."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    groups = parser.add_subparsers(dest="command", required=True)
    for module in (count, manifest, labeling, train, evaluate, bulk, detector, stage):
        module.register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help()
        return EXIT_BAD_INPUT
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
        # Inside the try: output cut short by a closed pipe surfaces here, not at exit.
        sys.stdout.flush()
        return status
    except InputError as error:
        print(f"counting: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except AwsFailure as error:
        print(f"counting: error: {error}", file=sys.stderr)
        return EXIT_AWS_FAILURE
    except BrokenPipeError:
        # The reader (`head`) has all it wanted: stop quietly. Python's documented recipe:
        # point stdout at devnull so the flush at exit does not fail again.
        # https://docs.python.org/3/library/signal.html#note-on-sigpipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as error:
        print(f"counting: error: {error.filename or ''}: {error.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"
