"""The one writer of results: what the counter and bulk counting leave for each image.

An image's result is its document (``results/<key>.json``), its annotated copy
(``annotated/<key>.png``, when the pipeline draws one), its table item, its event and its
metrics. ``ResultStore`` writes them for either pipeline in one order, with the same checks:

1. **Checks.** The ``results/`` and ``annotated/`` keys must fit S3 (else neither file is
   written: the item and the event carry the result). The copy is drawn on a picture of at
   most ``results.ANNOTATED_MAX_SIDE`` pixels; a drawing that fails costs the image its copy
   (logged), not its result.
2. **Claim.** The table item is put with ``unfinished: true``, unless the table holds this
   version's finished item with the same status from the same model: then the image was
   recorded and announced before (a replay, a retried batch) and nothing more is done.
3. **Files.** The document, then the annotated copy, each only while this version is the
   key's newest (below).
4. **Event** on the default bus (``counts.announcements``), up to 10 images per request.
5. **Metrics** (``adapters.measures``), printed at once.
6. **Finish.** The item put again, without ``unfinished`` (tried again in place: a try of the
   whole image would repeat the event and the metrics).

A failure at any step leaves the item unfinished and nothing announced that was not; the
image's next try (a new message, or ``attempts`` here) goes through the same steps and
finishes it. Only a try after a lost acknowledgment (the event or the metrics went out, the
finish did not) repeats them: consumers deduplicate events on (image, version, model).

**Newest version.** Files are per key, items per version. A file is put only if the source
key's current version (HeadObject) is this image's, and only over the file as this writer
last saw it (``If-Match`` its ETag, or ``If-None-Match: *`` while it saw none): S3 refuses the
put (412) if another writer changed it meanwhile, and the next round re-reads both. So a
version that finishes after a newer one leaves the newer one's files alone.
https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError
from PIL import Image

from adapters import clients, measures
from counting_core.constants import DEFAULT_IMAGE_SHAPE, JSON_CONTENT_TYPE
from counting_core.contracts.published import CountedDocument, ResultDocument
from counting_core.counts import announcements, results
from counting_core.counts.predictions import CountResult
from counting_core.counts.results import Outcome
from counting_core.errors import InputError
from counting_core.imaging import annotate, images

logger = logging.getLogger(__name__)

PNG_CONTENT_TYPE = "image/png"
# Rounds of conditional file writes before an image gives up (and is tried again later):
# each lost round means another writer changed the same key's files meanwhile.
FILE_WRITE_ROUNDS = 5
# S3's answers to a conditional put that lost a race: the file changed (412), another write
# to it was under way (409), or the file it matched was deleted (404).
# https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html
LOST_RACE_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"})
# HeadObject's answers for a missing key: 404, or 403 for a role without s3:ListBucket (S3
# hides whether the key exists). On the source key, whose image was read with the same
# s3:GetObject, either means the key has no current version now.
# https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html
FILE_GONE_CODES = frozenset({"404", "NoSuchKey"})
DENIED_CODES = frozenset({"403", "AccessDenied", "Forbidden"})
SOURCE_GONE_CODES = FILE_GONE_CODES | DENIED_CODES
# What a writer saw of a file its role may put but not read (no s3:GetObject on results/ or
# annotated/): it is put only while its version is the key's newest, without a condition.
# Two versions finishing at the same moment may then leave the older's file; with the grant,
# S3 refuses the older's put instead.
UNREADABLE = "unreadable"
# Seconds before an image's second attempt, doubled for each next one.
ATTEMPT_BACKOFF_SECONDS = 1.0
# Tries of the finishing write, the first included, whatever ``attempts`` says: by then the
# event and the metrics are out, and another try of the whole image would repeat them.
FINISH_ATTEMPTS = 3


class FilesContended(Exception):
    """Another writer kept changing the key's files: the image is tried again later."""


# Failures worth another attempt: AWS's, an event still refused, a lost race.
TRANSIENT = (ClientError, BotoCoreError, announcements.EventsNotDelivered, FilesContended)


@dataclass(frozen=True)
class ImageResult:
    """What one pipeline found for one image, to record.

    ``picture``: what to draw the counted detections on (a picture already bounded, or the
    image's bytes); None: no annotated copy. ``result``: the detections to draw.
    """

    document: ResultDocument
    result: CountResult | None = None
    picture: Image.Image | bytes | None = None
    endpoint_latency_ms: float | None = None


@dataclass(frozen=True)
class Staged:
    """An image through the claim and its files: what its event and finish still need."""

    image: str  # s3:// URI of the source
    entry: dict[str, Any]
    finished_item: dict[str, Any]
    outcome: Outcome


@dataclass(frozen=True)
class StoreClients:
    """The clients a result store writes through; a handler's own set extends them."""

    s3: Any
    dynamodb: Any
    events: Any

    @classmethod
    def of_this_function(cls, **more: Any) -> Any:
        """This function's clients under the STORAGE policy, and ``more`` of its own."""
        return cls(
            s3=clients.client("s3", clients.STORAGE),
            dynamodb=clients.client("dynamodb", clients.STORAGE),
            events=clients.client("events", clients.STORAGE),
            **more,
        )

    def result_store(self, *, table_name: str, event_source: str, attempts: int = 1) -> ResultStore:
        return ResultStore(
            s3=self.s3,
            dynamodb=self.dynamodb,
            events=self.events,
            table_name=table_name,
            event_source=event_source,
            attempts=attempts,
        )


class ResultStore:
    """Records images' results through injected clients (S3, DynamoDB, EventBridge).

    ``attempts``: tries per image within one call (1: the caller retries, as the counter does
    with a new message). Safe to share across threads: it holds clients, not resources.
    https://boto3.amazonaws.com/v1/documentation/api/latest/guide/resources.html#multithreading-or-multiprocessing-with-resources
    """

    def __init__(
        self,
        *,
        s3: Any,
        dynamodb: Any,
        events: Any,
        table_name: str,
        event_source: str,
        attempts: int = 1,
        measure: Callable[[Outcome], None] = measures.publish,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._s3 = s3
        self._dynamodb = dynamodb
        self._events = events
        self._table_name = table_name
        self._source = event_source
        self._attempts = attempts
        self._measure = measure
        self._sleep = sleep
        self._serialize = TypeSerializer().serialize

    def record(self, found: ImageResult) -> Outcome:
        """Record one image; raise its failure if it could not be finished."""
        staged = self.stage(found)
        if isinstance(staged, Outcome):
            return staged
        (finished,) = self.finish([staged])
        if isinstance(finished, Exception):
            raise finished
        return finished

    def stage(self, found: ImageResult) -> Staged | Outcome:
        """Steps 1 to 3 for one image: its staging, or its outcome if it was recorded before.

        Raises the last failure when every attempt failed.
        """
        document = found.document
        if isinstance(document, CountedDocument) and document.unnamed_class_ids:
            # Counted under their numbers: the active model's class map is likely wrong.
            logger.warning(
                "counted class ids the model's class map does not name",
                extra={
                    "image": document.source.uri,
                    "model": document.model.model_name,
                    "unnamed_class_ids": document.unnamed_class_ids,
                },
            )
        annotated = self._draw(found)
        for attempt in range(self._attempts):
            try:
                return self._claim_and_write(found, annotated)
            except TRANSIENT:
                if attempt + 1 == self._attempts:
                    raise
                self._sleep(ATTEMPT_BACKOFF_SECONDS * 2**attempt)
        raise AssertionError("unreachable: the last attempt raises")

    def finish(self, staged: Sequence[Staged]) -> list[Outcome | Exception]:
        """Steps 4 to 6 for staged images: each one's outcome, or the failure it ended with.

        An image's later attempts repeat only the steps it has not done: an event once
        delivered, or metrics once printed, are not sent again for a failed finish.
        """
        ended: dict[int, Outcome | Exception] = {}
        announced: set[int] = set()
        measured: set[int] = set()
        pending = list(range(len(staged)))
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(ATTEMPT_BACKOFF_SECONDS * 2 ** (attempt - 1))
            refused = self._announce(staged, [i for i in pending if i not in announced])
            for index in pending:
                failure = refused.get(index)
                if failure is not None:
                    ended[index] = failure
                    continue
                announced.add(index)
                image = staged[index]
                try:
                    if index not in measured:
                        self._measure(image.outcome)
                        measured.add(index)
                    self._put_finished(image.finished_item)
                except TRANSIENT as error:
                    ended[index] = error
                    continue
                ended[index] = image.outcome
            pending = [index for index in pending if isinstance(ended[index], Exception)]
            if not pending:
                break
        return [ended[index] for index in range(len(staged))]

    def _put_finished(self, item: dict[str, Any]) -> None:
        for attempt in range(FINISH_ATTEMPTS):
            try:
                self._dynamodb.put_item(TableName=self._table_name, Item=item)
                return
            except TRANSIENT:
                if attempt + 1 == FINISH_ATTEMPTS:
                    raise
                self._sleep(ATTEMPT_BACKOFF_SECONDS * 2**attempt)

    # --- Step 1 --------------------------------------------------------------------------

    def _draw(self, found: ImageResult) -> bytes | None:
        document = found.document
        if (
            found.picture is None
            or found.result is None
            or not isinstance(document, CountedDocument)
            or not _keys_fit(document.source.key)
        ):
            return None
        try:
            picture = (
                found.picture
                if isinstance(found.picture, Image.Image)
                # Decoded at most ANNOTATED_MAX_SIDE wide or tall, as the counter's picture;
                # the payload made beside it, at the model's usual size, is not used.
                else images.prepare(
                    found.picture,
                    payload_side=DEFAULT_IMAGE_SHAPE,
                    picture_side=results.ANNOTATED_MAX_SIDE,
                ).picture
            )
            if picture is None:  # prepare always makes one when given picture_side
                return None
            return annotate.annotate(picture, found.result.detections, found.result)
        except Exception as error:  # one image's drawing never costs it its result
            logger.warning(
                "annotated copy not drawn",
                extra={"image": document.source.uri, "error": f"{type(error).__name__}: {error}"},
            )
            return None

    # --- Steps 2 and 3 ---------------------------------------------------------------------

    def _claim_and_write(self, found: ImageResult, annotated: bytes | None) -> Staged | Outcome:
        document = found.document
        outcome = Outcome.of(document, endpoint_latency_ms=found.endpoint_latency_ms)
        if not self._claim(document):
            return replace(outcome, endpoint_latency_ms=None, replayed=True)
        key = document.source.key
        if _keys_fit(key):
            # The document first: a failure between the two leaves a result without its
            # picture, never a picture without its result.
            files = [(results.result_key(key), results.document_json(document), JSON_CONTENT_TYPE)]
            if annotated is not None:
                files.append((results.annotated_key(key), annotated, PNG_CONTENT_TYPE))
            self._write_files(document, files)
        return Staged(
            image=document.source.uri,
            entry=announcements.entry(
                document, source=self._source, annotated=annotated is not None
            ),
            finished_item=self._item(document, unfinished=False),
            outcome=outcome,
        )

    def _item(self, document: ResultDocument, *, unfinished: bool) -> dict[str, Any]:
        fields = results.dynamodb_item(results.table_item(document, unfinished=unfinished))
        return {name: self._serialize(value) for name, value in fields.items()}

    def _claim(self, document: ResultDocument) -> bool:
        """Put the unfinished item; False if this version's result is recorded already."""
        names = {"#image": "image", "#unfinished": "unfinished", "#status": "status"}
        values: dict[str, dict[str, str]] = {":status": {"S": document.status}}
        condition = (
            "attribute_not_exists(#image) OR attribute_exists(#unfinished) OR #status <> :status"
        )
        if isinstance(document, CountedDocument):
            # Another model's count of the same version is a new count: announced again.
            names["#model"] = "model_name"
            values[":model"] = {"S": document.model.model_name}
            condition += " OR #model <> :model"
        try:
            self._dynamodb.put_item(
                TableName=self._table_name,
                Item=self._item(document, unfinished=True),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _write_files(self, document: ResultDocument, files: list[tuple[str, bytes, str]]) -> None:
        # What this writer last saw of each file: None (no file), its ETag, or UNREADABLE.
        seen: dict[str, str | None] = {key: None for key, _, _ in files}
        for _ in range(FILE_WRITE_ROUNDS):
            current = self._is_current(document)
            if current is False:
                return  # a newer version is the key's now: its own result writes the files
            try:
                for key, body, content_type in files:
                    tag = seen[key]
                    if tag is None:
                        condition = {"IfNoneMatch": "*"}
                    elif current is None:
                        continue  # the key has no current version: keep what is there
                    elif tag == UNREADABLE:
                        condition = {}  # this version was the newest just now: the best known
                    else:
                        condition = {"IfMatch": tag}
                    put = self._s3.put_object(
                        Bucket=document.source.bucket,
                        Key=key,
                        Body=body,
                        ContentType=content_type,
                        **condition,
                    )
                    seen[key] = put.get("ETag")
                return
            except ClientError as error:
                if _code(error) not in LOST_RACE_CODES:
                    raise
                seen[key] = self._etag(document.source.bucket, key)
        raise FilesContended(
            f"{document.source.uri}: its result files changed under each of "
            f"{FILE_WRITE_ROUNDS} writes"
        )

    def _is_current(self, document: ResultDocument) -> bool | None:
        """Whether the counted version is its key's current one; None: the key has none."""
        source = document.source
        try:
            head = self._s3.head_object(Bucket=source.bucket, Key=source.key)
        except ClientError as error:
            if _code(error) in SOURCE_GONE_CODES:
                return None
            raise
        if source.version_id and head.get("VersionId"):
            return bool(head["VersionId"] == source.version_id)
        if source.etag and head.get("ETag"):
            return bool(head["ETag"].strip('"') == source.etag)
        return True  # nothing tells versions apart: the last writer wins, as before

    def _etag(self, bucket: str, key: str) -> str | None:
        """The file's ETag; None once it is gone; UNREADABLE without s3:GetObject on it."""
        try:
            tag: str = self._s3.head_object(Bucket=bucket, Key=key)["ETag"]
        except ClientError as error:
            if _code(error) in FILE_GONE_CODES:
                return None
            if _code(error) in DENIED_CODES:
                return UNREADABLE
            raise
        return tag

    # --- Steps 4 to 6 ----------------------------------------------------------------------

    def _announce(
        self, staged: Sequence[Staged], indices: list[int]
    ) -> dict[int, Exception | None]:
        """Publish the event of ``staged[i]`` for each ``i`` of ``indices``: its failure, or
        None once delivered."""
        if not indices:
            return {}
        try:
            refused = announcements.publish(
                [staged[index].entry for index in indices],
                self._events.put_events,
                sleep=self._sleep,
            )
        except TRANSIENT as error:
            return dict.fromkeys(indices, error)
        return {
            index: None
            if position not in refused
            else announcements.EventsNotDelivered(
                f"result event not delivered after {announcements.PUBLISH_ATTEMPTS} attempts "
                f"({refused[position]})"
            )
            for position, index in enumerate(indices)
        }


def _keys_fit(image_key: str) -> bool:
    try:
        results.check_derived_keys(image_key)
    except InputError:
        return False
    return True


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
