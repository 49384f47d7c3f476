"""The names a stage's resources take from its prefix (``<project>-<stage>``).

The stacks name what they create with these functions and the command line finds the same
resources with them, so that a command given only the data bucket (whose name holds the
prefix, the account and the Region) reaches the stage's state machines and records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Partitions by Region name; every other Region is in "aws".
# https://docs.aws.amazon.com/whitepapers/latest/aws-fault-isolation-boundaries/partitions.html
_PARTITIONS = (("cn-", "aws-cn"), ("us-gov-", "aws-us-gov"))
_DATA_BUCKET = re.compile(
    r"(?P<prefix>[a-z][a-z0-9-]*)-data-(?P<account>\d{12})-"
    r"(?P<region>[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d)"
)


def data_bucket(prefix: str, account: str, region: str) -> str:
    """Bucket names are global: the account and Region make the stage's one unique."""
    return f"{prefix}-data-{account}-{region}"


def training_state_machine(prefix: str) -> str:
    return f"{prefix}-training"


def bulk_counting_state_machine(prefix: str) -> str:
    return f"{prefix}-bulk-counting"


def endpoint(prefix: str) -> str:
    """The serverless endpoint's stable name: every training run updates it in place."""
    return f"{prefix}-counter"


def active_model_parameter(prefix: str) -> str:
    """The SSM parameter holding the active-model record (``counting_core.models.model_record``)."""
    return f"/{prefix}/active-model"


@dataclass(frozen=True)
class Stage:
    """A deployed stage, as its data bucket's name tells it."""

    prefix: str
    account: str
    region: str

    @property
    def partition(self) -> str:
        return next((name for start, name in _PARTITIONS if self.region.startswith(start)), "aws")

    def state_machine_arn(self, name: str) -> str:
        return f"arn:{self.partition}:states:{self.region}:{self.account}:stateMachine:{name}"


def stage_of_data_bucket(bucket: str) -> Stage | None:
    """The stage whose data bucket this is, or None for a bucket not named like one."""
    match = _DATA_BUCKET.fullmatch(bucket)
    return None if match is None else Stage(match["prefix"], match["account"], match["region"])
