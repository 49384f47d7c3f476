"""How the counter spends SQS receives: only on a message's own failures.

SQS counts every receive that does not end in a delete, and redrives a message to the
dead-letter queue after ``MAX_FAILURES`` of them. Left to that count alone, a message loses a
receive whenever its invocation ends badly for a reason that is not its own: handed back for
lack of time, or in a batch with an image that crashes the function. So the counter keeps
its own tally and never leaves a message undeleted on purpose:

* A retried failure (``failures.Fate.RETRIED``) sends the message again as a new message
  carrying ``failures + 1`` and a growing delay, and the original is deleted. A hand-back
  sends it again unchanged, at once.
* A receive that ended without a delete or a new copy (``ApproximateReceiveCount`` > 1) means
  the invocation died with the message in it: counted in ``crashes``. A message with crashes
  is a *suspect*: it is only counted alone, so if it is the one that kills the function, no
  other message pays for it. Suspects batched with others are sent again (keeping their
  tally) and one is counted.
* Once ``failures + crashes`` reaches ``MAX_FAILURES``, the counter moves the message to the
  dead-letter queue itself, with the last reason. The queue's own redrive policy (the same
  count) stays as the backstop for a message whose copies could not be sent.

Sending a copy and deleting the original is not atomic: a crash between the two leaves both,
and the image is delivered twice. Counting is idempotent per object version, so the second
delivery finds the first one's result and adds nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from counting_core.constants import IMAGE_WORST_CASE_SECONDS
from counting_core.uploads.failures import Fate

# Failed tries (retried failures and crashes together) before a message is dead-lettered;
# the intake queue's redrive policy uses the same number.
MAX_FAILURES = 5
# Message attributes carrying the tally across copies (SQS attribute type Number).
FAILURES_ATTRIBUTE = "counter-failures"
CRASHES_ATTRIBUTE = "counter-crashes"
# Message attribute saying why the counter dead-lettered a message (SQS attribute type String).
REASON_ATTRIBUTE = "counter-reason"
# Delay before retry number n: RETRY_DELAY_SECONDS * 2 ** (n - 1): 30, 60, 120, 240 s, long
# enough together for a serverless endpoint's cold start (up to 3 minutes) to pass.
# https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints.html
RETRY_DELAY_SECONDS = 30
# SendMessage's DelaySeconds is at most 15 minutes.
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html
MAX_DELAY_SECONDS = 900
# A duplicate that finds its image being counted elsewhere waits this long before trying.
IN_PROGRESS_DELAY_SECONDS = 60


@dataclass(frozen=True)
class Tally:
    """A message's failed tries so far, across the copies the counter sent."""

    failures: int = 0
    crashes: int = 0

    @classmethod
    def of(cls, receive_count: int, attributes: Mapping[str, Any]) -> Tally:
        """The tally of a received message: its carried attributes plus unreported receives.

        ``attributes`` are the record's ``messageAttributes`` as Lambda gives them
        (``{"name": {"stringValue": "2", "dataType": "Number"}}``); anything unreadable counts
        as zero, so a hand-crafted message cannot make the counter fail on it.
        """
        return cls(
            failures=_count(attributes, FAILURES_ATTRIBUTE),
            crashes=_count(attributes, CRASHES_ATTRIBUTE) + max(0, receive_count - 1),
        )

    @property
    def total(self) -> int:
        return self.failures + self.crashes

    @property
    def exhausted(self) -> bool:
        return self.total >= MAX_FAILURES

    @property
    def suspect(self) -> bool:
        return self.crashes > 0

    def failed(self) -> Tally:
        return Tally(self.failures + 1, self.crashes)

    def retry_delay_seconds(self) -> int:
        """Delay before the next try, after ``failures`` retried failures."""
        if self.failures == 0:
            return 0
        doubled: int = RETRY_DELAY_SECONDS * 2 ** (self.failures - 1)
        return min(MAX_DELAY_SECONDS, doubled)

    def attributes(self) -> dict[str, dict[str, str]]:
        """The SendMessage ``MessageAttributes`` that carry this tally to the next copy."""
        return {
            FAILURES_ATTRIBUTE: {"DataType": "Number", "StringValue": str(self.failures)},
            CRASHES_ATTRIBUTE: {"DataType": "Number", "StringValue": str(self.crashes)},
        }


def plan_batch(tallies: Sequence[Tally]) -> list[Fate | None]:
    """The fate the plan gives each message of a batch, in order; None: count it.

    Exhausted messages are dead-lettered. If any other is a suspect and it is not alone,
    only the first suspect is counted and every other message is handed back (sent again),
    so a crash costs only the suspect a try.
    """
    plan = [Fate.DEAD_LETTERED if tally.exhausted else None for tally in tallies]
    live = [index for index, fate in enumerate(plan) if fate is None]
    suspects = [index for index in live if tallies[index].suspect]
    if suspects and len(live) > 1:
        for index in live:
            if index != suspects[0]:
                plan[index] = Fate.HANDED_BACK
    return plan


class NotEnoughTime(Exception):
    """Too little of the invocation is left to count one more image: it is sent again."""


class TimeBudget:
    """Lets an image go on only while the invocation can still finish it in the worst case.

    Asked twice per image: when it starts (``start_image``), and when it holds an endpoint
    slot, just before its call (``start_call``). An image that found every slot taken waited
    behind other images' calls, each up to a worst case, so having had time at its start
    says nothing of the time left once it may call: without the second check, the image in
    flight beyond the slots could outrun the function timeout.

    The first image of an invocation always starts, and the first call always goes: the
    function timeout is at least one worst case (``CounterSettings.timeout_seconds``), and by
    then only moments have gone, which would otherwise refuse them forever at that minimum.
    Images of one invocation run in several threads, hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._remaining_ms: Callable[[], int] = lambda: 0
        self._images = 0
        self._calls = 0

    def new_invocation(self, remaining_ms: Callable[[], int]) -> None:
        """Start over for an invocation; ``remaining_ms`` is its context's time left."""
        with self._lock:
            self._remaining_ms = remaining_ms
            self._images = self._calls = 0

    def start_image(self) -> None:
        """Count an image as started, or raise NotEnoughTime if it might not finish."""
        with self._lock:
            self._check(self._images, "started")
            self._images += 1

    def start_call(self) -> None:
        """Count an endpoint call as started, or raise NotEnoughTime if its image might not
        finish."""
        with self._lock:
            self._check(self._calls, "sent to the endpoint")
            self._calls += 1

    def _check(self, before: int, what: str) -> None:
        remaining_ms = self._remaining_ms()
        if before and remaining_ms < IMAGE_WORST_CASE_SECONDS * 1000:
            raise NotEnoughTime(
                f"not {what}: {remaining_ms / 1000:.1f} s left in this invocation, one "
                f"image may take {IMAGE_WORST_CASE_SECONDS} s; it is sent again"
            )


def _count(attributes: Mapping[str, Any], name: str) -> int:
    value = attributes.get(name) if isinstance(attributes, Mapping) else None
    text = value.get("stringValue") if isinstance(value, Mapping) else None
    try:
        return max(0, min(int(text), MAX_FAILURES))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0
