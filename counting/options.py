"""What several commands take alike: a bucket by name or URI, and the stage a data bucket is.

A command given the data bucket finds the rest of its stage by the bucket's name
(``counting_core.stage_names``).
"""

from __future__ import annotations

from counting_core import stage_names
from counting_core.datasets.manifest import split_s3_uri
from counting_core.errors import InputError


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
