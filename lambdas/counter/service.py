"""Count one uploaded image: read it, ask the endpoint, write what was found.

The AWS calls live here, each one line over an injected client, so tests hand
in moto-backed or Stubber-wrapped clients; every decision is made by the pure
``counting`` package.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from counting_core import annotate, announcements, images, results
from counting_core.constants import IMAGE_CONTENT_TYPE, JSON_CONTENT_TYPE
from counting_core.errors import InputError
from counting_core.model_record import ActiveModel
from lambdas.counter import endpoint


class EndpointUnavailable(Exception):
    """The endpoint could not answer now (cold, throttled, failing): retry the image later."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one image, for metrics and the batch report."""

    status: str
    count: int = 0
    by_class: dict[str, int] | None = None
    endpoint_latency_ms: float | None = None
    reason: str | None = None


class CountingService:
    def __init__(
        self,
        *,
        s3: Any,
        sagemaker_runtime: Any,
        table: Any,
        active_model: Callable[[], ActiveModel],
        configured_threshold: float | None,
        annotate_images: bool,
        put_events: Callable[..., Any],
        event_source: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._s3 = s3
        self._runtime = sagemaker_runtime
        self._table = table
        self._active_model = active_model
        self._configured_threshold = configured_threshold
        self._annotate = annotate_images
        self._put_events = put_events
        self._event_source = event_source
        self._clock = clock

    def count(self, image: results.ImageRef) -> Outcome:
        data = self._read(image)
        try:
            images.detect_format(data)
            size = images.image_size(data)
            payload = images.fit_payload(data)
        except InputError as error:
            return self._reject(image, str(error))

        model = self._active_model()
        started = time.perf_counter()
        body = self._invoke(model.endpoint_name, payload)
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            document, result = results.count_response(
                image,
                body,
                model=model,
                configured_threshold=self._configured_threshold,
                image_size=size,
                counted_at=self._clock(),
                pipeline=results.PIPELINE_UPLOAD,
            )
        except InputError as error:
            # The model answered, but not in the documented shape: not the image's fault.
            raise EndpointUnavailable(f"endpoint answered an unexpected body: {error}") from None
        annotated = annotate.annotate(data, result.detections) if self._annotate else None
        self._write(image, document, annotated)
        return Outcome(
            status=results.STATUS_COUNTED,
            count=result.count,
            by_class=result.by_class,
            endpoint_latency_ms=latency_ms,
        )

    def _read(self, image: results.ImageRef) -> bytes:
        request = {"Bucket": image.bucket, "Key": image.key}
        if image.version_id:
            request["VersionId"] = image.version_id
        body: bytes = self._s3.get_object(**request)["Body"].read()
        return body

    def _invoke(self, endpoint_name: str, payload: bytes) -> bytes:
        try:
            response = endpoint.invoke(
                lambda: self._runtime.invoke_endpoint(
                    EndpointName=endpoint_name,
                    ContentType=IMAGE_CONTENT_TYPE,
                    Accept=JSON_CONTENT_TYPE,
                    Body=payload,
                )
            )
        except ClientError as error:
            # Still failing after botocore's retries and a cold start's (endpoint.invoke):
            # the message goes back to the queue and is retried, then dead-lettered.
            code = error.response.get("Error", {}).get("Code", "Unknown")
            raise EndpointUnavailable(f"{endpoint_name}: {code}") from error
        except BotoCoreError as error:
            raise EndpointUnavailable(f"{endpoint_name}: {error}") from error
        body: bytes = response["Body"].read()
        return body

    def _reject(self, image: results.ImageRef, reason: str) -> Outcome:
        document = results.rejected_document(
            image, reason, self._clock(), pipeline=results.PIPELINE_UPLOAD
        )
        self._write(image, document, None)
        return Outcome(status=results.STATUS_REJECTED, reason=reason)

    def _write(
        self, image: results.ImageRef, document: dict[str, Any], annotated: bytes | None
    ) -> None:
        """Result (and annotated image), then its event, then its table item: an image in
        the table has been announced. A publish that fails after its retries raises
        EventsNotDelivered, and SQS delivers the image again."""
        self._s3.put_object(
            Bucket=image.bucket,
            Key=results.result_key(image.key),
            Body=json.dumps(document, indent=2, sort_keys=True).encode(),
            ContentType=JSON_CONTENT_TYPE,
        )
        if annotated is not None:
            self._s3.put_object(
                Bucket=image.bucket,
                Key=results.annotated_key(image.key),
                Body=annotated,
                ContentType="image/png",
            )
        entry = announcements.entry(
            document, source=self._event_source, annotated=annotated is not None
        )
        announcements.publish([entry], self._put_events)
        self._table.put_item(Item=results.table_item(document))
