"""Every way counting one uploaded image can fail, and what the counter does about it.

* **rejected**: the image, or its key, can never be counted. The reason is recorded once (the
  result JSON when the key leaves room for one, and the table item) and the message is done.
* **retried**: the failure is not the image's (the endpoint, AWS, our own writes). The message
  is sent again with a growing delay and, after ``delivery.MAX_FAILURES`` failed tries, goes
  to the dead-letter queue with the last reason.
* **dead-lettered** at once: the message is not an upload event of the data bucket's
  ``incoming/`` prefix; there is no image to record a result against. (A retried failure
  ends dead-lettered too, after its tries.)
* **ignored**: a folder marker (a key ending in ``/``): nothing to count.
* **handed back**: too little time left in the invocation, or another delivery of the image
  under way; sent again, not a failure.

``RULES`` is the table the README prints (``failure_table``); tests check each row against
the code that applies it. ``Fate`` names every end a message can have, counted included: the
rules, the batch plan (``delivery.plan_batch``) and the counter's log line all use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Fate(StrEnum):
    """What becomes of one message of the intake queue."""

    COUNTED = "counted"
    REJECTED = "rejected"
    RETRIED = "retried"
    DEAD_LETTERED = "dead-lettered"
    IGNORED = "ignored"
    HANDED_BACK = "handed back"


class TryAgain(Exception):
    """A failure that is not the image's: count it again later."""


@dataclass(frozen=True)
class Rule:
    failure: str
    fate: Fate


RULES: tuple[Rule, ...] = (
    Rule("Message body not JSON, or not an S3 `Object Created` event", Fate.DEAD_LETTERED),
    Rule("Event for another bucket, or a key outside `incoming/`", Fate.DEAD_LETTERED),
    Rule("Folder marker (key ending in `/`)", Fate.IGNORED),
    Rule("Name not ending in .jpg, .jpeg, .jpe, .jfif or .png", Fate.REJECTED),
    Rule(
        "Key too long for its `results/` or `annotated/` key (S3 keys: 1,024 bytes)",
        Fate.REJECTED,
    ),
    Rule("Object deleted before it was counted (`NoSuchKey`, `NoSuchVersion`)", Fate.REJECTED),
    Rule("Empty object, or larger than the upload limit", Fate.REJECTED),
    Rule("First bytes neither JPEG nor PNG", Fate.REJECTED),
    Rule("More pixels than the limit for its format", Fate.REJECTED),
    Rule("Corrupt or truncated image", Fate.REJECTED),
    Rule("Too narrow to keep 32 pixels on its short side at the model's size", Fate.REJECTED),
    Rule(
        "`ModelError` whose container answered 4xx (other than 408, 429): the model "
        "cannot take this image",
        Fate.REJECTED,
    ),
    Rule("`ThrottlingException`, `ModelNotReadyException` (cold start)", Fate.RETRIED),
    Rule(
        "`InternalFailure`, `ServiceUnavailable`, `InternalDependencyException`, "
        "`ModelError` with 5xx, 408, 429 or no status",
        Fate.RETRIED,
    ),
    Rule("`ValidationError` (for example, the endpoint missing during a deployment)", Fate.RETRIED),
    Rule("Endpoint timeout or connection error", Fate.RETRIED),
    Rule("Endpoint answer not in the documented `prediction` shape", Fate.RETRIED),
    Rule("No active model yet, or its record unreadable", Fate.RETRIED),
    Rule("Reading the image fails otherwise (access denied, KMS, 5xx)", Fate.RETRIED),
    Rule(
        "Writing the result JSON, annotated image, table item or idempotency record fails",
        Fate.RETRIED,
    ),
    Rule("Another delivery of the same image is being counted", Fate.HANDED_BACK),
    Rule(
        "Too little time left in the invocation to start the image, or to call the endpoint "
        "once a slot is free",
        Fate.HANDED_BACK,
    ),
)

# Container statuses that say "later", not "never": request timeout and too many requests.
# https://www.rfc-editor.org/rfc/rfc9110#name-408-request-timeout
TRANSIENT_CLIENT_STATUSES = frozenset({408, 429})
# S3 error codes meaning the object version is gone for good.
# https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList
OBJECT_GONE_CODES = frozenset({"NoSuchKey", "NoSuchVersion"})


def endpoint_error(code: str, original_status: int | None) -> Fate:
    """REJECTED only when the model's own container refused this input with a 4xx.

    ``code`` is the InvokeEndpoint error code; ``original_status`` is ModelError's
    ``OriginalStatusCode``, the container's status (botocore: sagemaker-runtime
    ``ModelError`` shape). Everything else is the endpoint's or AWS's state: retried.
    """
    if (
        code == "ModelError"
        and original_status is not None
        and 400 <= original_status < 500
        and original_status not in TRANSIENT_CLIENT_STATUSES
    ):
        return Fate.REJECTED
    return Fate.RETRIED


def read_error(code: str) -> Fate:
    """REJECTED when the object version no longer exists; any other read failure is retried."""
    return Fate.REJECTED if code in OBJECT_GONE_CODES else Fate.RETRIED
