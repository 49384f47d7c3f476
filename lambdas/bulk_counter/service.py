"""The bulk-counting state machine's work on S3 and DynamoDB, batch by batch.

Every decision is made by the pure ``counting_core`` modules (``bulk`` for the run,
``results`` for the documents): the same post-processing as an uploaded image, from the
transform's output instead of the endpoint's answer. Every image's result is written by the
same result store as an upload's (``adapters.result_store``), image by image: one image's
failure (after the store's own attempts) is that image's, counted ``failed`` in the batch's
report, and never fails its batch; a batch the Distributed Map runs again finds its finished
images recorded and neither announces nor measures them twice. Clients are injected, so
tests hand in moto-backed ones.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from adapters.objects import Objects
from adapters.result_store import ImageResult, ResultStore, Staged
from counting_core.constants import (
    DEFAULT_IMAGE_SHAPE,
    JSON_CONTENT_TYPE,
    SERVERLESS_MAX_PAYLOAD_BYTES,
)
from counting_core.contracts.bulk_counter import ManifestWritten
from counting_core.contracts.published import RejectedDocument, SourceObject
from counting_core.counts import bulk, predictions, responses, results
from counting_core.counts.announcements import MAX_ENTRIES_PER_REQUEST
from counting_core.counts.results import Outcome
from counting_core.datasets.manifest import transform_manifest_chunks
from counting_core.errors import InputError
from counting_core.imaging import detection, images, tiling
from counting_core.imaging.image_formats import is_image_name
from counting_core.models.model_record import ActiveModel

logger = logging.getLogger(__name__)

# Images in flight per batch: S3 and DynamoDB calls are I/O-bound. Clients' connection pools
# hold at least this many (adapters.clients.SHARED_BY_THREADS).
WORKERS = 10
# Tries per image for its writes, the first included, before it is counted failed: the result
# store resumes where a try stopped, so a retry costs only what is left.
WRITE_ATTEMPTS = 3
# Tiles go to the transform as JPEG (detection.cut_for_transform).
TILE_CONTENT_TYPE = "image/jpeg"
# Tiles of the image being cut written at once: with the worker cutting it (the others wait
# for it), within the clients' connection pool (adapters.clients.SHARED_BY_THREADS).
TILE_WRITERS = 8


class BulkCounter:
    def __init__(
        self,
        *,
        objects: Objects,
        dynamodb: Any,
        store: ResultStore,
        table_name: str,
        configured_threshold: float | None,
        annotate_images: bool,
        max_payload_bytes: int,
        tiling_policy: tiling.TilingPolicy,
        clock: Callable[[], datetime],
    ) -> None:
        self._objects = objects
        self._bucket = objects.bucket
        self._dynamodb = dynamodb
        self._store = store
        self._table_name = table_name
        self._threshold = configured_threshold
        self._annotate = annotate_images
        self._max_payload = max_payload_bytes
        self._clock = clock
        self._tiling = tiling_policy
        self._outputs_in_flight = _ByteBudget(bulk.OUTPUT_BYTES_IN_FLIGHT)
        # At most one image read whole and decoded at native resolution at a time (400 MB
        # for 100 MP), as the counter does: the other workers wait to cut theirs into tiles.
        self._decoding = threading.Lock()

    # --- Step 1: which listed objects go to the transform ---------------------------------

    def select(
        self, run: str, model: ActiveModel, listed: list[bulk.ListedObject]
    ) -> bulk.BatchReport:
        """Drop what is not an image, skip what this model counted, refuse what would fail
        the transform; write the rest as this batch's selection."""
        report = bulk.BatchReport(listed=len(listed))
        candidates = [item for item in listed if is_image_name(item.key)]
        report.ignored = len(listed) - len(candidates)
        with ThreadPoolExecutor(WORKERS) as pool:
            done = list(pool.map(lambda item: self._counted_by(item, model), candidates))
            fresh = [item for item, counted in zip(candidates, done, strict=True) if not counted]
            report.skipped = len(candidates) - len(fresh)
            headers = list(pool.map(self._head, fresh))
            accepted = []
            refused = []
            for item, (image, header) in zip(fresh, headers, strict=True):
                reason = bulk.refusal(item.key, item.size, header, self._max_payload)
                if reason is None:
                    accepted.append((item, image, header))
                else:
                    refused.append(ImageResult(self._rejected(image, reason)))
            selected: list[bulk.Selected] = []
            failed: list[Exception] = []
            for chosen in pool.map(lambda pair: self._choose(run, model, *pair), accepted):
                if isinstance(chosen, bulk.Selected):
                    selected.append(chosen)
                elif isinstance(chosen, ImageResult):
                    refused.append(chosen)
                else:
                    failed.append(chosen)
            ended = self._record(pool, [self._store_stage(found) for found in refused])
        self._tally(report, [*ended, *failed])
        report.selected = len(selected)
        batch = bulk.batch_name(item.key for item in listed)
        if selected:
            self._objects.put_json(
                f"{bulk.selection_prefix(run)}{batch}.json",
                [image.model_dump() for image in selected],
            )
        self._objects.put_json(bulk.report_key(run, "select", batch), report.model_dump())
        return report

    def _counted_by(self, item: bulk.ListedObject, model: ActiveModel) -> bool:
        """True if this object's content was counted by ``model`` already (any version), and
        that count finished (an unfinished item is counted again, which finishes it)."""
        etag = bulk.unquoted_etag(item.etag)
        response = self._dynamodb.query(
            TableName=self._table_name,
            KeyConditionExpression="#image = :image",
            ProjectionExpression="#status, #etag, #model, #unfinished",
            # STATUS is a DynamoDB reserved word; the others are named alike for clarity.
            ExpressionAttributeNames={
                "#image": "image",
                "#status": "status",
                "#etag": "etag",
                "#model": "model_name",
                "#unfinished": "unfinished",
            },
            ExpressionAttributeValues={":image": {"S": self._objects.uri(item.key)}},
        )
        return any(
            found.get("status", {}).get("S") == results.STATUS_COUNTED
            and found.get("model_name", {}).get("S") == model.model_name
            and found.get("etag", {}).get("S") == etag
            and "unfinished" not in found
            for found in response.get("Items", ())
        )

    def _head(self, item: bulk.ListedObject) -> tuple[SourceObject, bytes]:
        """The object's version and first bytes (one ranged GET; none for an empty file):
        its signature, and its size when it may be tiled."""
        request: dict[str, Any] = {"Bucket": self._bucket, "Key": item.key}
        length = bulk.HEADER_BYTES if self._tiling.mode == "off" else bulk.SIZE_HEADER_BYTES
        if item.size:
            request["Range"] = f"bytes=0-{length - 1}"
        response = self._objects.s3.get_object(**request)
        return self._source(item.key, response), response["Body"].read()

    def _choose(
        self,
        run: str,
        model: ActiveModel,
        item: bulk.ListedObject,
        image: SourceObject,
        header: bytes,
    ) -> bulk.Selected | ImageResult | Exception:
        """How an accepted image goes to the transform: whole, or cut into tiles written
        under the run's tiles (``counter.tiling``); its rejection when it cannot be cut; an
        Overwritten or any other failure, this image's alone."""
        listed = bulk.Selected(key=item.key, etag=bulk.unquoted_etag(item.etag))
        if self._tiling.mode == "off":
            return listed
        image_shape = model.image_shape or DEFAULT_IMAGE_SHAPE
        try:
            try:
                size: tuple[int, int] | None = images.image_size(header)
            except InputError:  # the size lies beyond the header: read with the image
                size = None
            if size is not None and not self._tiles(size, model):
                return listed
            # One image's bytes and decoded pixels in memory at a time, as the counter does.
            with self._decoding:
                image, data = self._read_listed(listed)
                if size is None and not self._tiles(images.image_size(data), model):
                    return listed
                return self._cut(run, listed, data, image_shape)
        except InputError as error:
            return ImageResult(self._rejected(image, str(error)))
        except Exception as error:  # this image's, reported failed; never its batch's
            _log_failure(self._objects.uri(item.key), error)
            return error

    def _tiles(self, size: tuple[int, int], model: ActiveModel) -> bool:
        """Whether ``counter.tiling`` tiles an upright image of ``size`` for ``model``."""
        image_shape = model.image_shape or DEFAULT_IMAGE_SHAPE
        return tiling.should_tile(self._tiling, size, image_shape, model.tiling_measured)

    def _cut(self, run: str, listed: bulk.Selected, data: bytes, image_shape: int) -> bulk.Selected:
        """Cut the image into tiles under the run's tiles, ``TILE_WRITERS`` written while the
        next are cut, and record how (``bulk.TiledImage``). Raises InputError for an image
        that cannot be cut."""
        digest = bulk.image_digest(listed.key)
        keys: list[str] = []
        writing: deque[Future[Any]] = deque()
        with (
            ThreadPoolExecutor(TILE_WRITERS) as writers,
            detection.cut_for_transform(
                data,
                policy=self._tiling,
                image_shape=image_shape,
                # Within the transform's MaxPayloadInMB, and the endpoint's 4 MB as the
                # counter's tiles are.
                max_payload_bytes=min(self._max_payload, SERVERLESS_MAX_PAYLOAD_BYTES),
            ) as (plan, tiles),
        ):
            for source, (_, payload) in enumerate(tiles):
                if len(writing) == TILE_WRITERS:  # at most this many encoded tiles held
                    writing.popleft().result()
                key = bulk.tile_key(run, digest, source)
                writing.append(
                    writers.submit(
                        self._objects.s3.put_object,
                        Bucket=self._bucket,
                        Key=key,
                        Body=payload,
                        ContentType=TILE_CONTENT_TYPE,
                    )
                )
                keys.append(key)
            for written in writing:
                written.result()
        selected = listed.model_copy(update={"tiles": len(keys), "whole": plan.whole_image_pass})
        tiled = bulk.TiledImage(
            selected=selected, tile_set=tiling.TileSet.of(listed.key, plan, keys)
        )
        self._objects.put_json(bulk.tile_set_key(run, digest), tiled.model_dump())
        return selected

    # --- Step 2: the transform's input -----------------------------------------------------

    def write_manifest(self, run: str) -> ManifestWritten:
        """Join the batches' selections into the transform's manifest (each image's tiles, and
        the image itself unless it goes in tiles only), and group the images by file name for
        the count step; return how many images it sends."""
        selections = list(self._objects.keys_under(bulk.selection_prefix(run)))
        # shard -> file name -> the images so named: a million selected images hold some
        # 200 MB here, within the function's memory.
        by_name: dict[str, dict[str, list[dict[str, Any]]]] = {}
        selected = 0

        def keys() -> Iterator[str]:
            nonlocal selected
            with ThreadPoolExecutor(WORKERS) as pool:
                for batch in pool.map(self._objects.get_json, selections):
                    selected += len(batch)
                    for found in batch:
                        image = bulk.Selected.model_validate(found)
                        shard = by_name.setdefault(bulk.name_shard(image.file_name), {})
                        shard.setdefault(image.file_name, []).append(found)
                        yield from bulk.transform_inputs(run, image)

        key = bulk.manifest_key(run)
        self._objects.upload_chunks(
            key, transform_manifest_chunks(f"s3://{self._bucket}/", keys()), JSON_CONTENT_TYPE
        )
        # Every shard, the empty ones too: a count batch reads the shards of its outputs'
        # names, and a missing one would read as the function's want of s3:ListBucket.
        with ThreadPoolExecutor(WORKERS) as pool:
            list(
                pool.map(
                    lambda shard: self._objects.put_json(
                        bulk.name_shard_key(run, shard), by_name.get(shard, {})
                    ),
                    bulk.name_shards(),
                )
            )
        return ManifestWritten(selected=selected, uri=self._objects.uri(key))

    # --- Step 3: outputs to results --------------------------------------------------------

    def count(
        self, run: str, model: ActiveModel, outputs: list[bulk.ListedObject]
    ) -> bulk.BatchReport:
        """Turn each transform output into the upload pipeline's result, event and metrics: an
        image's own, or for a tiled image the output of its first tile, which brings the
        others' along (the rest are passed over)."""
        owners = self._owners(run, outputs)
        with ThreadPoolExecutor(WORKERS) as pool:
            staged = [
                image
                for image in pool.map(
                    lambda output, owner: self._stage_output(run, model, output, owner),
                    outputs,
                    owners,
                )
                if image is not None
            ]
            ended = self._record(pool, staged)
        report = bulk.BatchReport()
        self._tally(report, ended)
        batch = bulk.batch_name(output.key for output in outputs)
        self._objects.put_json(bulk.report_key(run, "count", batch), report.model_dump())
        return report

    def _owners(
        self, run: str, outputs: list[bulk.ListedObject]
    ) -> list[bulk.Selected | bulk.TileOutput | InputError]:
        """The selected image each output answers, matched as the evaluation matches its
        responses (``counting_core.counts.responses``): where Batch Transform writes the
        output of a ManifestFile input (the input's folders kept or not) is not clearly
        documented, so both layouts are accepted and an output two images could own is
        refused."""
        names: list[str | bulk.TileOutput | InputError] = []
        for output in outputs:
            try:
                name = bulk.output_name(run, output.key)
            except InputError as error:
                names.append(error)
                continue
            names.append(bulk.tile_output(run, name) or name)
        file_names = {
            name.rsplit("/", 1)[-1].removesuffix(bulk.OUTPUT_SUFFIX)
            for name in names
            if isinstance(name, str)
        }
        shards = sorted({bulk.name_shard(file_name) for file_name in file_names})
        with ThreadPoolExecutor(WORKERS) as pool:
            found = pool.map(
                lambda shard: self._objects.get_json(bulk.name_shard_key(run, shard)), shards
            )
            named: dict[str, list[bulk.Selected]] = {
                file_name: [bulk.Selected.model_validate(image) for image in images]
                for shard in found
                for file_name, images in shard.items()
                if file_name in file_names
            }
            return list(pool.map(lambda name: self._owner(run, name, named), names))

    def _owner(
        self,
        run: str,
        name: str | bulk.TileOutput | InputError,
        named: dict[str, list[bulk.Selected]],
    ) -> bulk.Selected | bulk.TileOutput | InputError:
        if not isinstance(name, str):
            return name
        file_name = name.rsplit("/", 1)[-1].removesuffix(bulk.OUTPUT_SUFFIX)
        candidates = named.get(file_name, [])
        # Images sharing a file name: every output that one of them may have, as it exists.
        answers = (
            [name]
            if len(candidates) < 2
            else [
                possible
                for possible in sorted(
                    {f"{image.key}{bulk.OUTPUT_SUFFIX}" for image in candidates}
                    | {f"{file_name}{bulk.OUTPUT_SUFFIX}"}
                )
                if self._exists(f"{bulk.outputs_prefix(run)}{possible}")
            ]
        )
        try:
            matched, _, _ = responses.pair_responses(candidates, answers)
        except InputError as error:
            return error
        owner = next((image for image in candidates if matched.get(image.key) == name), None)
        if owner is None:
            return InputError(f"no image this run sent to the transform is named like {name}")
        return owner

    def _exists(self, key: str) -> bool:
        """Whether ``key`` exists, by listing it: the function may list only under bulk/, and
        without s3:ListBucket on the key S3 answers a HEAD of a missing key with 403, not 404."""
        listed = self._objects.s3.list_objects_v2(Bucket=self._bucket, Prefix=key, MaxKeys=1)
        return any(found["Key"] == key for found in listed.get("Contents", ()))

    def _stage_output(
        self,
        run: str,
        model: ActiveModel,
        output: bulk.ListedObject,
        owner: bulk.Selected | bulk.TileOutput | InputError,
    ) -> Staged | Outcome | Exception | None:
        """One output through the store's first steps, holding its bytes in the budget; None
        for an output read with its tiled image's first tile."""
        if isinstance(owner, bulk.TileOutput):
            return self._stage_tiles(run, model, output, owner) if owner.source == 0 else None
        if isinstance(owner, InputError):
            _log_failure(self._objects.uri(output.key), owner)
            return owner
        if owner.tiles:  # the whole-image pass of a tiled image
            return None
        if (oversized := _oversized(output.size)) is not None:
            _log_failure(self._objects.uri(output.key), oversized)
            return oversized
        with self._outputs_in_flight.holding(output.size):
            try:
                found = self._post_process(model, output, owner)
            except Exception as error:  # this image's, reported failed; never its batch's
                _log_failure(self._objects.uri(owner.key), error)
                return error
            return self._store_stage(found)

    def _post_process(
        self, model: ActiveModel, output: bulk.ListedObject, owner: bulk.Selected
    ) -> ImageResult:
        """The output's result; InputError when it cannot be one (the summary counts it
        failed), Overwritten when the image no longer has the ETag the run listed."""
        body = self._objects.s3.get_object(Bucket=self._bucket, Key=output.key)["Body"].read()
        image, data = self._read_listed(owner)
        try:
            size = images.image_size(data)
        except InputError as error:
            return ImageResult(self._rejected(image, str(error)))
        document, result = results.count_response(
            image,
            body,
            model=model,
            configured_threshold=self._threshold,
            image_size=size,
            counted_at=self._clock(),
            pipeline=results.PIPELINE_BULK,
        )
        return ImageResult(document, result, data if self._annotate else None)

    def _stage_tiles(
        self, run: str, model: ActiveModel, output: bulk.ListedObject, tile: bulk.TileOutput
    ) -> Staged | Outcome | Exception:
        """A tiled image, from the output of its first tile: every answer of its tiles (and of
        the image itself, the whole-image pass) merged as the endpoint's are, through the
        store's first steps, holding the answers' bytes in the budget."""
        uri = self._objects.uri(output.key)
        try:
            tiled = bulk.TiledImage.model_validate(
                self._objects.get_json(bulk.tile_set_key(run, tile.digest))
            )
            uri = self._objects.uri(tiled.selected.key)
            answers = self._tile_answers(run, output.key, tiled)
        except Exception as error:  # this image's, reported failed; never its batch's
            _log_failure(uri, error)
            return error
        with self._outputs_in_flight.holding(sum(size for _, _, size in answers)):
            try:
                found = self._merge_tiles(model, tiled, answers)
            except Exception as error:  # this image's, reported failed; never its batch's
                _log_failure(uri, error)
                return error
            return self._store_stage(found)

    def _tile_answers(
        self, run: str, first_key: str, tiled: bulk.TiledImage
    ) -> list[tuple[int, str, int]]:
        """Where the transform answered each request of a tiled image, ``(source, key,
        size)``: its tiles, found beside the first tile's output, and the image itself, found
        in the same layout (folders kept or not: ``bulk.output_name``). InputError when one is
        missing (the transform failed it), too large, or could be another image's."""
        image, plan = tiled.selected, tiled.tile_set.plan()
        digest = bulk.image_digest(image.key)
        folder = first_key[: first_key.rindex("/") + 1]
        found: dict[int, tuple[int, str, int]] = {}
        for key, size in self._objects.sizes_under(f"{folder}{digest}-"):
            tile = bulk.tile_output(run, bulk.output_name(run, key))
            if tile is not None and tile.digest == digest:
                found[tile.source] = (tile.source, key, size)
        tiles = len(plan.windows)
        missing = [source for source in range(tiles) if source not in found]
        if missing:
            raise InputError(
                f"the transform answered {tiles - len(missing)} of the image's {tiles} tiles "
                f"(not tile {missing[0] + 1})"
            )
        answers = [found[source] for source in range(tiles)]
        if plan.whole_image_pass:
            answers.append((plan.whole_image_source, *self._whole_answer(run, folder, image)))
        for _, key, size in answers:
            if (oversized := _oversized(size)) is not None:
                raise InputError(f"{self._objects.uri(key)}: {oversized}")
        return answers

    def _whole_answer(self, run: str, folder: str, image: bulk.Selected) -> tuple[str, int]:
        """The key and size of the transform's answer for a tiled image itself, in the layout
        its tiles' answers are in (``folder``)."""
        kept = folder != bulk.outputs_prefix(run)
        if not kept:
            # File names alone: an image sharing this one's file name wrote the same output.
            shard = self._objects.get_json(
                bulk.name_shard_key(run, bulk.name_shard(image.file_name))
            )
            sharing = shard.get(image.file_name, [])
            if len(sharing) > 1:
                raise InputError(
                    f"{len(sharing)} images of the run are named {image.file_name}: the "
                    "transform's answer for this one cannot be told from theirs"
                )
        name = image.key if kept else image.file_name
        key = f"{bulk.outputs_prefix(run)}{name}{bulk.OUTPUT_SUFFIX}"
        listed = dict(self._objects.sizes_under(key))
        if key not in listed:
            raise InputError("the transform did not answer the image itself (the whole-image pass)")
        return key, listed[key]

    def _merge_tiles(
        self, model: ActiveModel, tiled: bulk.TiledImage, answers: list[tuple[int, str, int]]
    ) -> ImageResult:
        """The tiled image's result: its answers merged (``tiling.merge_answers``), counted
        with the threshold for tiled counts; Overwritten when the image no longer has the ETag
        the run listed (its tiles were cut from that version, the whole-image pass may not)."""
        parsed = []
        for source, key, _ in answers:
            body = self._objects.s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
            try:
                parsed.append((source, predictions.parse_response(body)))
            except InputError as error:
                raise InputError(f"{self._objects.uri(key)}: {error}") from None
        detections, record = tiling.merge_answers(tiled.tile_set.plan(), parsed)
        image, data = self._read_listed(tiled.selected)
        tile_set = tiled.tile_set
        document, result = results.count_found(
            image,
            detections,
            capped=record.capped,
            model=model,
            configured_threshold=self._threshold,
            image_size=(tile_set.width, tile_set.height),
            counted_at=self._clock(),
            pipeline=results.PIPELINE_BULK,
            tiling=record.used(),
        )
        return ImageResult(document, result, data if self._annotate else None)

    def _read_listed(self, listed: bulk.Selected) -> tuple[SourceObject, bytes]:
        """The image's version with the ETag the run listed, and its bytes; Overwritten when
        another version replaced it."""
        request: dict[str, Any] = {"Bucket": self._bucket, "Key": listed.key}
        if listed.etag:
            request["IfMatch"] = f'"{listed.etag}"'
        try:
            response = self._objects.s3.get_object(**request)
        except ClientError as error:
            # 412: another version replaced the listed one; the transform read whichever was
            # newest when it ran, so neither can be named as counted.
            if error.response["Error"]["Code"] == "PreconditionFailed":
                raise Overwritten(
                    f"{self._objects.uri(listed.key)} was overwritten after the run listed it "
                    f"(ETag {listed.etag}): not counted; run the prefix again to count it"
                ) from error
            raise
        return self._source(listed.key, response), response["Body"].read()

    def _source(self, key: str, response: dict[str, Any]) -> SourceObject:
        """The object a GetObject answered: its version and ETag."""
        return SourceObject(
            bucket=self._bucket,
            key=key,
            version_id=response.get("VersionId"),
            etag=bulk.unquoted_etag(response.get("ETag")),
        )

    # --- Step 4: the run's summary ----------------------------------------------------------

    def summarize(
        self, run: str, prefix: str, model_name: str, transform: bulk.TransformOutcome
    ) -> bulk.Summary:
        reports: dict[str, list[bulk.BatchReport]] = {}
        for step in ("select", "count"):
            keys = list(self._objects.keys_under(f"{bulk.reports_prefix(run)}{step}/"))
            with ThreadPoolExecutor(WORKERS) as pool:
                reports[step] = [
                    bulk.BatchReport.model_validate(found)
                    for found in pool.map(self._objects.get_json, keys)
                ]
        summary = bulk.summarize(
            run=run,
            prefix=prefix,
            model_name=model_name,
            bucket=self._bucket,
            selections=reports["select"],
            counts=reports["count"],
            transform=transform,
        )
        self._objects.put_json(bulk.summary_key(run), summary.model_dump(mode="json"))
        return summary

    # --- Recording ---------------------------------------------------------------------------

    def _rejected(self, image: SourceObject, reason: str) -> RejectedDocument:
        return results.rejected_document(
            image, reason, self._clock(), pipeline=results.PIPELINE_BULK
        )

    def _store_stage(self, found: ImageResult) -> Staged | Outcome | Exception:
        try:
            return self._store.stage(found)
        except Exception as error:  # this image's, reported failed; never its batch's
            _log_failure(found.document.source.uri, error)
            return error

    def _record(
        self, pool: ThreadPoolExecutor, staged: list[Staged | Outcome | Exception]
    ) -> list[Outcome | Exception]:
        """Announce, measure and finish the staged images, a PutEvents request's worth per
        task; what was not staged keeps its outcome or failure."""
        ready = [index for index, image in enumerate(staged) if isinstance(image, Staged)]
        groups = [
            ready[start : start + MAX_ENTRIES_PER_REQUEST]
            for start in range(0, len(ready), MAX_ENTRIES_PER_REQUEST)
        ]
        ended = [image.outcome if isinstance(image, Staged) else image for image in staged]
        finished = pool.map(self._finish, ([staged[index] for index in group] for group in groups))
        for group, ends in zip(groups, finished, strict=True):
            for index, end in zip(group, ends, strict=True):
                ended[index] = end
        return ended

    def _finish(self, staged: list[Staged]) -> list[Outcome | Exception]:
        ends = self._store.finish(staged)
        for image, end in zip(staged, ends, strict=True):
            if isinstance(end, Exception):
                _log_failure(image.image, end)
        return ends

    def _tally(self, report: bulk.BatchReport, ended: list[Outcome | Exception]) -> None:
        """Add each image's end to ``report``: what the table holds finished, and failures."""
        by_class: Counter[str] = Counter(report.objects_by_class)
        for end in ended:
            if isinstance(end, Overwritten):
                report.overwritten += 1
            elif isinstance(end, Exception):
                report.failed += 1
            elif end.status == results.STATUS_COUNTED:
                report.counted += 1
                report.capped += int(end.capped)
                by_class.update(end.by_class)
            else:
                report.rejected += 1
        report.objects_by_class = dict(sorted(by_class.items()))


class Overwritten(Exception):
    """The image has another version than the one the run listed and sent to the transform."""


def _oversized(size: int) -> InputError | None:
    """Why a transform output of ``size`` bytes is not turned into a result, if it is not."""
    if size <= bulk.MAX_OUTPUT_BYTES:
        return None
    return InputError(
        f"the model's answer is {size} bytes, more than the {bulk.MAX_OUTPUT_BYTES} a bulk "
        "run turns into a result"
    )


def _log_failure(image: str, error: Exception) -> None:
    lines = str(error).strip().splitlines()
    logger.warning(
        "image not recorded: counted failed",
        extra={"image": image, "error": f"{type(error).__name__}: {lines[0] if lines else ''}"},
    )


class _ByteBudget:
    """Bytes of transform outputs held at once, across a batch's worker threads."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._held = 0
        self._changed = threading.Condition()

    @contextmanager
    def holding(self, size: int) -> Iterator[None]:
        """Wait until ``size`` bytes fit (all of the budget for an output larger than it)."""
        size = min(size, self._limit)
        with self._changed:
            self._changed.wait_for(lambda: self._held + size <= self._limit)
            self._held += size
        try:
            yield
        finally:
            with self._changed:
                self._held -= size
                self._changed.notify_all()
