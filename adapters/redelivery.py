"""Sending an intake message again, or to the dead-letter queue, with its tally (SQS)."""

from __future__ import annotations

from typing import Any

from counting_core.uploads import delivery

# Reasons carried to the dead-letter queue are cut to this many characters.
REASON_ATTRIBUTE_CHARACTERS = 1000


class Redelivery:
    """Sends a message again as a new one, or to the dead-letter queue, with its tally."""

    def __init__(self, *, sqs: Any, queue_url: str, dead_letter_queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._dead_letter_queue_url = dead_letter_queue_url

    def send_again(self, body: str, tally: delivery.Tally, delay_seconds: int = 0) -> None:
        self._sqs.send_message(
            QueueUrl=self._queue_url,
            MessageBody=body,
            DelaySeconds=delay_seconds,
            MessageAttributes=tally.attributes(),
        )

    def delete(self, receipt_handle: str) -> None:
        """Delete a received message now, rather than when Lambda deletes the batch's successes.

        Lambda deletes it again afterwards; either way the message is gone, so whether SQS
        answers that second delete with success (the API reference does not say) does not matter.
        """
        self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=receipt_handle)

    def dead_letter(self, body: str, tally: delivery.Tally, reason: str) -> None:
        """``reason`` is one line: the first is kept, cut to REASON_ATTRIBUTE_CHARACTERS."""
        lines = reason.strip().splitlines()
        attributes = tally.attributes()
        attributes[delivery.REASON_ATTRIBUTE] = {
            "DataType": "String",
            "StringValue": (lines[0] if lines else "")[:REASON_ATTRIBUTE_CHARACTERS] or "unknown",
        }
        self._sqs.send_message(
            QueueUrl=self._dead_letter_queue_url, MessageBody=body, MessageAttributes=attributes
        )
