"""Count one uploaded image, and decide what becomes of each SQS message.

The AWS calls go through injected clients and ``adapters`` (the result store, the SQS
redelivery), so tests hand in moto-backed or Stubber-wrapped clients; every decision (what is
rejected or retried, how a batch is planned, how images are scaled, what is written) is made
by the pure ``counting_core``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from adapters.redelivery import Redelivery
from adapters.result_store import ImageResult, ResultStore
from counting_core.constants import DEFAULT_IMAGE_SHAPE, IMAGE_CONTENT_TYPE, JSON_CONTENT_TYPE
from counting_core.contracts import events
from counting_core.contracts.published import SourceObject
from counting_core.counts import results
from counting_core.counts.results import Outcome
from counting_core.errors import InputError, describe_validation_error
from counting_core.imaging import annotate, detection, images, tiling
from counting_core.imaging.detection import UnexpectedAnswer
from counting_core.models.model_record import ActiveModel
from counting_core.uploads import delivery
from counting_core.uploads.cold_start import call_until_ready
from counting_core.uploads.failures import Fate, TryAgain, endpoint_error, read_error


class CountingService:
    """Counts one image version: read it, ask the endpoint (whole and scaled, or in tiles as
    ``counter.tiling`` says: ``detection.detect``), hand the result to the store."""

    def __init__(
        self,
        *,
        s3: Any,
        sagemaker_runtime: Any,
        store: ResultStore,
        active_model: Callable[[], ActiveModel],
        configured_threshold: float | None,
        annotate_images: bool,
        payload_scale: float,
        tiling_policy: tiling.TilingPolicy,
        mark_tiles: bool,
        endpoint_slots: int,
        time_budget: delivery.TimeBudget,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._s3 = s3
        self._runtime = sagemaker_runtime
        self._store = store
        self._active_model = active_model
        self._configured_threshold = configured_threshold
        self._annotate = annotate_images
        self._payload_scale = payload_scale
        self._tiling = tiling_policy
        self._mark_tiles = mark_tiles
        self._time_budget = time_budget
        self._clock = clock
        # One image is decoded at a time, so one full-resolution copy at most is in memory
        # while other images of the batch wait for the endpoint.
        # Tiled, that copy is at native resolution and lives until the image's tiles are sent.
        self._decoding = threading.Lock()
        # At most this many endpoint calls at once from this function: its share of the
        # endpoint's MaxConcurrency (CounterSettings.images_in_flight). The tiles of one
        # image share them with the other images' calls.
        self._slot_count = endpoint_slots
        self._endpoint_slots = threading.BoundedSemaphore(endpoint_slots)

    def count(self, image: SourceObject) -> Outcome:
        try:
            images.check_name(image.key)
            # Checked before the endpoint is paid for; the store checks again before writing.
            results.check_derived_keys(image.key)
        except InputError as error:
            return self._reject(image, str(error))
        model = self._model()
        calls_ms: list[float] = []

        def invoke(payload: bytes) -> bytes:
            started = time.perf_counter()
            body = self._invoke(model.endpoint_name, payload)
            calls_ms.append((time.perf_counter() - started) * 1000)
            return body

        try:
            with self._read(image) as upload:
                found = detection.detect(
                    upload,
                    invoke=invoke,
                    concurrency=self._slot_count,
                    policy=self._tiling,
                    image_shape=model.image_shape or DEFAULT_IMAGE_SHAPE,
                    payload_scale=self._payload_scale,
                    picture_side=results.ANNOTATED_MAX_SIDE if self._annotate else None,
                    decoding=self._decoding,
                    tiling_measured=model.tiling_measured,
                )
        except UnexpectedAnswer as error:
            # The model answered, but not in the documented shape: not the image's fault.
            raise TryAgain(f"endpoint answered an unexpected body: {error}") from None
        except InputError as error:
            return self._reject(image, str(error))
        document, result = results.count_found(
            image,
            found.detections,
            capped=found.capped,
            model=model,
            configured_threshold=self._configured_threshold,
            image_size=found.image_size,
            counted_at=self._clock(),
            pipeline=results.PIPELINE_UPLOAD,
            tiling=found.tiling.used(),
        )
        picture = found.picture
        record = found.tiling
        if picture is not None and self._mark_tiles and record.tile_side and record.overlap:
            windows = tiling.tile_windows(found.image_size, record.tile_side, record.overlap)
            annotate.mark_tiles(picture, found.image_size, windows)
        # The slowest call: an untiled image's one call, or what held a tiled image longest.
        return self._store.record(
            ImageResult(document, result, picture, endpoint_latency_ms=max(calls_ms))
        )

    def _model(self) -> ActiveModel:
        try:
            return self._active_model()
        except (ClientError, BotoCoreError, ValidationError, ValueError) as error:
            raise TryAgain(f"no usable active-model record: {_reason(error)}") from None

    def _read(self, image: SourceObject) -> IO[bytes]:
        request = {"Bucket": image.bucket, "Key": image.key}
        if image.version_id:
            request["VersionId"] = image.version_id
        try:
            response = self._s3.get_object(**request)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "Unknown")
            if read_error(code) is Fate.REJECTED:
                raise InputError(f"the object was deleted before it was counted ({code})") from None
            raise
        body = response["Body"]
        try:
            # Size and first bytes are checked before the rest of the body is read.
            return images.read_upload(body, response.get("ContentLength", 0))
        finally:
            body.close()

    def _invoke(self, endpoint_name: str, payload: bytes) -> bytes:
        """The endpoint's answer; InputError when the model refuses this image for good.

        NotEnoughTime when the slot came too late for the image to finish (``TimeBudget``).
        """
        try:
            with self._endpoint_slots:
                self._time_budget.start_call()
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
            if endpoint_error(code, status) is Fate.REJECTED:
                raise InputError(
                    f"the model refused the image ({code} {status}): {_first_line(detail)}"
                ) from None
            raise TryAgain(f"{endpoint_name}: {code} {status or ''}".rstrip()) from error
        except BotoCoreError as error:
            raise TryAgain(f"{endpoint_name}: {error}") from error

    def _reject(self, image: SourceObject, reason: str) -> Outcome:
        document = results.rejected_document(
            image, reason, self._clock(), pipeline=results.PIPELINE_UPLOAD
        )
        return self._store.record(ImageResult(document))


@dataclass(frozen=True)
class Handled:
    """What became of one message: ``outcome`` is set when it reached its image's count."""

    fate: Fate
    reason: str | None = None
    outcome: Outcome | None = None
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
        count_once: Callable[[SourceObject], Outcome],
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
        self, body: str, tally: delivery.Tally, planned: Fate, receipt_handle: str
    ) -> Handled:
        """Settle a message the batch plan does not count: dead-lettered, or handed back.

        Done, original deleted, before the batch's suspect is counted: if that suspect then
        kills the function, these messages are already gone and pay nothing for it.
        """
        if planned is Fate.DEAD_LETTERED:
            handled = self._dead_letter(body, tally, f"failed {tally.total} times")
        else:
            handled = self._send_again(body, tally, "a suspect of the batch is counted alone")
        self._redelivery.delete(receipt_handle)
        return handled

    def handle(self, body: str, tally: delivery.Tally) -> Handled:
        """Count one message's image, or send it again or dead-letter it as its failure says."""
        try:
            image = events.ObjectCreated.model_validate_json(body).object_version()
            events.check_scope(image, self._data_bucket)
        except (ValidationError, InputError, ValueError) as error:
            return self._dead_letter(body, tally, f"not an upload event: {_reason(error)}")
        if events.is_folder_marker(image):
            return Handled(Fate.IGNORED, "folder marker", image=image.uri)
        try:
            self._time_budget.start_image()
            outcome = self._count_once(image)
        except Exception as error:  # every failure ends in a copy or the dead-letter queue
            return self._failed(body, tally, error)
        return Handled(Fate(outcome.status), outcome.reason, outcome, image.uri)

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
        self._redelivery.send_again(body, failed, failed.retry_delay_seconds())
        return Handled(Fate.RETRIED, reason)

    def _send_again(
        self, body: str, tally: delivery.Tally, reason: str, delay_seconds: int = 0
    ) -> Handled:
        self._redelivery.send_again(body, tally, delay_seconds)
        return Handled(Fate.HANDED_BACK, reason)

    def _dead_letter(self, body: str, tally: delivery.Tally, reason: str) -> Handled:
        self._redelivery.dead_letter(body, tally, reason)
        return Handled(Fate.DEAD_LETTERED, reason)


def _reason(error: Exception) -> str:
    """One line naming the failure and, for a model's, the field: pydantic's first line only
    counts the problems."""
    if isinstance(error, ValidationError):
        return f"{error.title}: {describe_validation_error(error)[0]}"
    return _first_line(error) or type(error).__name__


def _first_line(error: object) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""
