"""The ``counting`` command line: what the guide's notebook did, offline and scriptable.

Each command group lives in its own module and registers its sub-commands
with ``register(subparsers)``; heavy imports (boto3, Pillow) wait until a
command that needs them runs. Commands print JSON on stdout; bad input ends
with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from counting import bulk, count, detector, evaluate, labeling, manifest, train
from counting_core.errors import InputError

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="counting", description="Count objects in images with a SageMaker model."
    )
    groups = parser.add_subparsers(dest="command", required=True)
    for module in (count, manifest, labeling, train, evaluate, bulk, detector):
        module.register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
        return status
    except InputError as error:
        print(f"counting: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:
        print(f"counting: error: {error.filename or ''}: {error.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
