"""The EventBridge events the app's Lambdas consume, as validated models (no AWS calls)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from counting_core import layout
from counting_core.contracts.published import SourceObject
from counting_core.errors import InputError


class _Bucket(BaseModel):
    name: str = Field(min_length=3)


class _Object(BaseModel):
    # EventBridge gives the key as stored (not URL-encoded, unlike S3 notifications).
    key: str = Field(min_length=1)
    etag: str | None = None
    version_id: str | None = Field(None, alias="version-id")


class _Detail(BaseModel):
    bucket: _Bucket
    object: _Object


class ObjectCreated(BaseModel):
    """The part of an S3 "Object Created" event, as EventBridge delivers it, that we use.

    https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html
    """

    detail_type: str = Field(alias="detail-type", pattern="^Object Created$")
    detail: _Detail

    def object_version(self) -> SourceObject:
        """The bucket, key, version id and ETag of the object that was created."""
        obj = self.detail.object
        return SourceObject(
            bucket=self.detail.bucket.name, key=obj.key, version_id=obj.version_id, etag=obj.etag
        )


def is_folder_marker(image: SourceObject) -> bool:
    """A key ending in ``/`` is the console's empty "folder" object: nothing to count."""
    return image.key.endswith("/")


def check_scope(image: SourceObject, data_bucket: str) -> None:
    """Raise InputError unless the event is an upload to the data bucket's ``incoming/``.

    The EventBridge rule only forwards those; anything else on the queue was put there by
    hand or by a misconfigured rule, and is not the counter's to write results for.
    """
    if image.bucket != data_bucket:
        raise InputError(f"event for bucket {image.bucket!r}, not the data bucket {data_bucket!r}")
    if not image.key.startswith(layout.INCOMING):
        raise InputError(f"key {image.key!r} is not under {layout.INCOMING}")


#: How a Step Functions execution can end: ExecutionStatus without RUNNING and
#: PENDING_REDRIVE (a redrive starts it again).
#: https://docs.aws.amazon.com/step-functions/latest/apireference/API_DescribeExecution.html
ENDED_STATUSES = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


class _ExecutionDetail(BaseModel):
    execution_arn: str = Field(alias="executionArn", pattern=r"^arn:aws[a-z-]*:states:")
    state_machine_arn: str = Field(alias="stateMachineArn")
    status: str


class ExecutionEnded(BaseModel):
    """The part of a "Step Functions Execution Status Change" event, as EventBridge delivers
    it, that we use: which execution, of which state machine, ended how. Only Standard
    workflows send them, best effort.
    https://docs.aws.amazon.com/step-functions/latest/dg/cw-events.html
    """

    detail_type: str = Field(
        alias="detail-type", pattern="^Step Functions Execution Status Change$"
    )
    detail: _ExecutionDetail
