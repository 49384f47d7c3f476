"""How the CLI calls AWS: clients with botocore's standard retries, errors as one line.

Imported by a command only when it calls AWS, so ``counting --help`` and the offline
commands do not pay for importing boto3.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from counting import AwsFailure


def client(service: str, region: str | None) -> Any:
    """A client with standard retries; AwsFailure when none can be made (no Region, say)."""
    try:
        return boto3.client(
            service, region_name=region, config=Config(retries={"mode": "standard"})
        )
    except BotoCoreError as error:
        raise AwsFailure(one_line(f"cannot call {service}: {error}")) from None


@contextmanager
def reported(subject: str, *, doing: str) -> Iterator[None]:
    """Raise AWS errors in the block as one-line ``AwsFailure``s.

    A service's refusal reads ``<subject>: <Code>: <Message>``; a failure to reach it
    (no credentials, no Region, no network: botocore's message says which) reads
    ``cannot <doing>: <message>``.
    """
    try:
        yield
    except ClientError as error:
        details = error.response.get("Error", {})
        message = f"{subject}: {details.get('Code', 'error')}: {details.get('Message', '')}"
        raise AwsFailure(one_line(message)) from None
    except BotoCoreError as error:
        raise AwsFailure(one_line(f"cannot {doing}: {error}")) from None


def one_line(text: str) -> str:
    # A model container's error can span lines; the CLI's errors are one line each.
    return " ".join(text.split())
