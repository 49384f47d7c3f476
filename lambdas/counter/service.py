"""Count one uploaded image, and decide what becomes of each SQS message.

The AWS calls live here, each over an injected client, so tests hand in moto-backed or
Stubber-wrapped clients; every decision (what is rejected or retried, how a batch is
planned, how images are scaled, what is written) is made by the pure ``counting_core``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from counting_core.constants import DEFAULT_IMAGE_SHAPE, IMAGE_CONTENT_TYPE, JSON_CONTENT_TYPE
from counting_core.contracts import events
from counting_core.contracts.published import ResultDocument
from counting_core.counts import announcements, results
from counting_core.errors import InputError, describe_validation_error
from counting_core.imaging import annotate, images
from counting_core.models.model_record import ActiveModel
from counting_core.uploads import delivery
from counting_core.uploads.cold_start import call_until_ready
from counting_core.uploads.failures import TryAgain, Verdict, endpoint_error, read_error

# The annotated copy keeps at most this many pixels on its longest side: DCI 4K, so a 12 MP
# phone photo (4032 px) is drawn on at full resolution and larger photos are scaled down.
ANNOTATED_MAX_SIDE = 4096
# Reasons carried to the dead-letter queue are cut to this many characters.
REASON_ATTRIBUTE_CHARACTERS = 1000


@dataclass(frozen=True)
class Outcome:
    """What happened to one image, for metrics and the batch report."""

    status: str
    count: int = 0
    by_class: dict[str, int] | None = None
    capped: bool = False
    endpoint_latency_ms: float | None = None
    reason: str | None = None


class CountingService:
    """Counts one image version: read, scale, ask the endpoint, write the result.

    Writes go in a fixed order, the table item last: a reader takes the item as the sign
    that the JSON and annotated image beside it are complete. A crash before the item leaves
    no idempotency record either, so the next delivery redoes every write (same keys).
    """

    def __init__(
        self,
        *,
        s3: Any,
        sagemaker_runtime: Any,
        dynamodb: Any,
        table_name: str,
        active_model: Callable[[], ActiveModel],
        configured_threshold: float | None,
        annotate_images: bool,
        payload_scale: float,
        endpoint_slots: int = 1,
        put_events: Callable[..., Any],
        event_source: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._s3 = s3
        self._runtime = sagemaker_runtime
        # The client, not a boto3 Table resource: resources are not safe to share across
        # the threads that count a batch's images; clients are.
        # https://boto3.amazonaws.com/v1/documentation/api/latest/guide/resources.html#multithreading-or-multiprocessing-with-resources
        self._dynamodb = dynamodb
        self._table_name = table_name
        self._serialize = TypeSerializer().serialize
        self._active_model = active_model
        self._configured_threshold = configured_threshold
        self._annotate = annotate_images
        self._payload_scale = payload_scale
        self._put_events = put_events
        self._event_source = event_source
        self._clock = clock
        # One image is decoded at a time, so one full-resolution copy at most is in memory
        # while other images of the batch wait for the endpoint.
        self._decoding = threading.Lock()
        # At most this many endpoint calls at once from this function: its share of the
        # endpoint's MaxConcurrency (CounterSettings.images_in_flight).
        self._endpoint_slots = threading.BoundedSemaphore(endpoint_slots)

    def count(self, image: results.ImageRef) -> Outcome:
        try:
            images.check_name(image.key)
        except InputError as error:
            return self._reject(image, str(error))
        try:
            results.check_derived_keys(image.key)
        except InputError as error:
            return self._reject(image, str(error), keys_fit=False)
        model = self._model()
        try:
            prepared = self._read_and_prepare(image, model)
        except InputError as error:
            return self._reject(image, str(error))

        started = time.perf_counter()
        try:
            body = self._invoke(model.endpoint_name, prepared.payload)
        except InputError as error:
            return self._reject(image, str(error))
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            document, result = results.count_response(
                image,
                body,
                model=model,
                configured_threshold=self._configured_threshold,
                image_size=prepared.size,
                counted_at=self._clock(),
                pipeline=results.PIPELINE_UPLOAD,
            )
        except InputError as error:
            # The model answered, but not in the documented shape: not the image's fault.
            raise TryAgain(f"endpoint answered an unexpected body: {error}") from None
        annotated = (
            annotate.annotate(prepared.picture, result.detections, result)
            if prepared.picture is not None
            else None
        )
        self._write(image, document, annotated)
        return Outcome(
            status=results.STATUS_COUNTED,
            count=result.count,
            by_class=result.by_class,
            capped=result.capped,
            endpoint_latency_ms=latency_ms,
        )

    def _model(self) -> ActiveModel:
        try:
            return self._active_model()
        except (ClientError, BotoCoreError, ValidationError, ValueError) as error:
            raise TryAgain(f"no usable active-model record: {_first_line(error)}") from None

    def _read_and_prepare(
        self, image: results.ImageRef, model: ActiveModel
    ) -> images.PreparedImage:
        request = {"Bucket": image.bucket, "Key": image.key}
        if image.version_id:
            request["VersionId"] = image.version_id
        try:
            response = self._s3.get_object(**request)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "Unknown")
            if read_error(code) is Verdict.REJECTED:
                raise InputError(f"the object was deleted before it was counted ({code})") from None
            raise
        body = response["Body"]
        try:
            # Size and first bytes are checked before the rest of the body is read.
            upload = images.read_upload(body, response.get("ContentLength", 0))
        finally:
            body.close()
        payload_side = round((model.image_shape or DEFAULT_IMAGE_SHAPE) * self._payload_scale)
        with upload, self._decoding:
            return images.prepare(
                upload,
                payload_side=payload_side,
                picture_side=ANNOTATED_MAX_SIDE if self._annotate else None,
            )

    def _invoke(self, endpoint_name: str, payload: bytes) -> bytes:
        """The endpoint's answer; InputError when the model refuses this image for good."""
        try:
            with self._endpoint_slots:
                # botocore's retries, then a cold start's.
                response = call_until_ready(
                    lambda: self._runtime.invoke_endpoint(
                        EndpointName=endpoint_name,
                        ContentType=IMAGE_CONTENT_TYPE,
                        Accept=JSON_CONTENT_TYPE,
                        Body=payload,
                    )
                )
                body: bytes = response["Body"].read()
                return body
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "Unknown")
            status = error.response.get("OriginalStatusCode")
            detail = error.response.get("OriginalMessage") or error.response.get("Error", {}).get(
                "Message", ""
            )
            if endpoint_error(code, status) is Verdict.REJECTED:
                raise InputError(
                    f"the model refused the image ({code} {status}): {_first_line(detail)}"
                ) from None
            raise TryAgain(f"{endpoint_name}: {code} {status or ''}".rstrip()) from error
        except BotoCoreError as error:
            raise TryAgain(f"{endpoint_name}: {error}") from error

    def _reject(self, image: results.ImageRef, reason: str, *, keys_fit: bool = True) -> Outcome:
        document = results.rejected_document(
            image, reason, self._clock(), pipeline=results.PIPELINE_UPLOAD
        )
        self._write(image, document, None, json_too=keys_fit)
        return Outcome(status=results.STATUS_REJECTED, reason=reason)

    def _write(
        self,
        image: results.ImageRef,
        document: ResultDocument,
        annotated: bytes | None,
        *,
        json_too: bool = True,
    ) -> None:
        """The annotated image and the result, then its event, then its table item last: an
        image in the table has every write done and has been announced. A publish that fails
        after its retries raises, and the image is tried again (idempotency makes it safe)."""
        if annotated is not None:
            self._s3.put_object(
                Bucket=image.bucket,
                Key=results.annotated_key(image.key),
                Body=annotated,
                ContentType="image/png",
            )
        if json_too:
            self._s3.put_object(
                Bucket=image.bucket,
                Key=results.result_key(image.key),
                Body=results.document_json(document),
                ContentType=JSON_CONTENT_TYPE,
            )
        entry = announcements.entry(
            document, source=self._event_source, annotated=annotated is not None
        )
        announcements.publish([entry], self._put_events)
        item = results.dynamodb_item(results.table_item(document))
        self._dynamodb.put_item(
            TableName=self._table_name,
            Item={name: self._serialize(value) for name, value in item.items()},
        )


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
        attributes = tally.attributes()
        attributes[delivery.REASON_ATTRIBUTE] = {
            "DataType": "String",
            "StringValue": _first_line(reason)[:REASON_ATTRIBUTE_CHARACTERS] or "unknown",
        }
        self._sqs.send_message(
            QueueUrl=self._dead_letter_queue_url, MessageBody=body, MessageAttributes=attributes
        )


@dataclass(frozen=True)
class Handled:
    """What became of one message: ``outcome`` is set when this delivery counted its image."""

    how: str
    reason: str | None = None
    outcome: dict[str, Any] | None = None
    image: str | None = None  # its s3:// URI, once the message is read


class MessageHandler:
    """Carries one SQS message to its end: counted or rejected, sent again, or dead-lettered.

    Every failure is turned into one of those, so the message is deleted from the queue; an
    exception escapes only when SQS itself cannot take the copy, and then the message stays
    (its receive count grows and the batch planner treats it as a suspect).
    """

    def __init__(
        self,
        *,
        count_once: Callable[[dict[str, Any], str], dict[str, Any]],
        redelivery: Redelivery,
        time_budget: delivery.TimeBudget,
        data_bucket: str,
        in_progress: type[Exception],
    ) -> None:
        self._count_once = count_once
        self._redelivery = redelivery
        self._time_budget = time_budget
        self._data_bucket = data_bucket
        self._in_progress = in_progress

    def pass_on(
        self, body: str, tally: delivery.Tally, action: delivery.Action, receipt_handle: str
    ) -> Handled:
        """Settle a message the batch plan does not count: sent again, or dead-lettered.

        Done, original deleted, before the batch's suspect is counted: if that suspect then
        kills the function, these messages are already gone and pay nothing for it.
        """
        if action is delivery.Action.DEAD_LETTER:
            handled = self._dead_letter(body, tally, f"failed {tally.total} times")
        else:
            handled = self._send_again(body, tally, "a suspect of the batch is counted alone")
        self._redelivery.delete(receipt_handle)
        return handled

    def handle(
        self, body: str, tally: delivery.Tally, remaining_ms: Callable[[], int], attempt: str
    ) -> Handled:
        """Count one message's image, or send it again or dead-letter it as its failure says."""
        try:
            image = events.ObjectCreated.model_validate_json(body).object_version()
            events.check_scope(image, self._data_bucket)
        except (ValidationError, InputError, ValueError) as error:
            return self._dead_letter(body, tally, f"not an upload event: {_first_line(error)}")
        if events.is_folder_marker(image):
            return Handled("ignored", "folder marker", image=image.uri)
        try:
            self._time_budget.start_image(remaining_ms())
            outcome = self._count_once(_image_fields(image), attempt)
        except Exception as error:  # every failure ends in a copy or the dead-letter queue
            return self._failed(body, tally, error)
        fresh = outcome.get("attempt") == attempt
        return Handled(
            outcome["status"], outcome.get("reason"), outcome if fresh else None, image.uri
        )

    def _failed(self, body: str, tally: delivery.Tally, error: Exception) -> Handled:
        if isinstance(error, delivery.NotEnoughTime):
            return self._send_again(body, tally, str(error))
        if isinstance(error, self._in_progress):
            return self._send_again(
                body,
                tally,
                "another delivery of this image is being counted",
                delivery.IN_PROGRESS_DELAY_SECONDS,
            )
        failed = tally.failed()
        reason = _reason(error)
        if failed.exhausted:
            return self._dead_letter(body, failed, reason)
        return self._send_again(body, failed, reason, failed.retry_delay_seconds(), "retried")

    def _send_again(
        self,
        body: str,
        tally: delivery.Tally,
        reason: str,
        delay_seconds: int = 0,
        how: str = "sent again",
    ) -> Handled:
        self._redelivery.send_again(body, tally, delay_seconds)
        return Handled(how, reason)

    def _dead_letter(self, body: str, tally: delivery.Tally, reason: str) -> Handled:
        self._redelivery.dead_letter(body, tally, reason)
        return Handled("dead-lettered", reason)


def _image_fields(image: results.ImageRef) -> dict[str, Any]:
    return {
        "bucket": image.bucket,
        "key": image.key,
        "version_id": image.version_id,
        "etag": image.etag,
    }


def _reason(error: Exception) -> str:
    """One line naming the failure: pydantic's first line only counts the problems."""
    if isinstance(error, ValidationError):
        return f"{error.title}: {describe_validation_error(error)[0]}"
    return _first_line(error) or type(error).__name__


def _first_line(error: object) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""
