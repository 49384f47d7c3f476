"""Cut a run's validation images into tiles for Batch Transform, as the counter would tile them.

A function of its own rather than a second action of evaluate_counts: it decodes photos at
native resolution (the imaging layer, the tiled counter's memory), reads the images and
writes tiles (grants the evaluation does not need), and it works in a loop of the state
machine until every image is cut, while the evaluation reads answers in one invocation.

Each invocation cuts images from where the last one stopped (``CutRequest.next``), stops
starting new ones when less than ``TIME_RESERVE_MS`` of its time is left, and writes the
TileSets of the images it cut as one part (``<model folder>/tiles/tile-sets/<first>.jsonl``:
a retried invocation writes the same part again). The one that cuts the last image writes the
Batch Transform manifest of every tile. Every image is cut, whatever ``counter.tiling``'s mode:
the evaluation compares tiled with whole counts to decide ``auto``.

The AWS calls live here, each one line over an injected S3 client (tests hand in moto's).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from adapters.objects import Objects
from counting_core import layout
from counting_core.constants import JSON_CONTENT_TYPE
from counting_core.contracts.cut_tiles import CutResponse, Environment
from counting_core.datasets.manifest import read_manifest, transform_manifest_chunks
from counting_core.errors import InputError
from counting_core.imaging import detection
from counting_core.imaging.tiling import TileSet, read_tile_sets
from counting_core.models import evaluation, training

#: Images cut at once, each by its own thread: one decoded photo per thread (a 100 MP photo
#: is 300 MB decoded), within the function's memory.
WORKERS = 2
#: No image is started with less time than this left: a 100 MP photo takes about a minute to
#: decode, cut into some 600 tiles and write them; the rest is margin for S3.
TIME_RESERVE_MS = 3 * 60 * 1000
#: Tiles are JPEGs (``detection.encoded_tiles``).
TILE_CONTENT_TYPE = "image/jpeg"


class CutFailed(Exception):
    """The validation images cannot be cut; the message says why. The state machine
    reports it under this name and deploys nothing."""


class TileCutter:
    def __init__(self, environment: Environment, *, s3: Any) -> None:
        self._objects = Objects(s3, environment.bucket)
        self._policy = environment.tiling_policy
        self._image_shape = environment.image_shape

    def cut(
        self,
        *,
        run_name: str,
        validation_manifest_uri: str,
        label_attribute: str | None,
        start: int,
        remaining_ms: Callable[[], int],
    ) -> CutResponse:
        """Cut images from ``start`` on while ``remaining_ms()`` allows (at least one)."""
        folder = training.model_folder(run_name)
        try:
            manifest_key = self._objects.key_of(
                validation_manifest_uri, (layout.TRAINING_MANIFESTS,)
            )
            images = evaluation.labeled_images(
                read_manifest(io.BytesIO(self._objects.read(manifest_key))), label_attribute
            ).images
            if start > len(images):
                raise InputError(f"cannot resume at image {start}: there are {len(images)}")
            stop = start
            tile_sets: list[TileSet] = []
            with ThreadPoolExecutor(max_workers=WORKERS) as pool:
                while stop < len(images) and (stop == start or remaining_ms() > TIME_RESERVE_MS):
                    batch = range(stop, min(stop + WORKERS, len(images)))
                    tile_sets.extend(
                        pool.map(lambda i: self._cut_image(folder, i, images[i].source_ref), batch)
                    )
                    stop = batch[-1] + 1
            if tile_sets:
                part = "".join(tile_set.model_dump_json() + "\n" for tile_set in tile_sets)
                self._objects.put(f"{folder}{training.TILE_SETS}{start:09d}.jsonl", part.encode(),
                            JSON_CONTENT_TYPE)  # fmt: skip
            done = stop == len(images)
            manifest_uri = self._write_manifest(folder) if done else None
        except (InputError, UnicodeDecodeError) as error:
            raise CutFailed(f"run {run_name}: {error}") from None
        return CutResponse(
            done=done,
            next=stop,
            images=len(images),
            tile_sets_uri=self._objects.uri(f"{folder}{training.TILE_SETS}"),
            manifest_uri=manifest_uri,
        )

    def _cut_image(self, folder: str, index: int, source_ref: str) -> TileSet:
        """One image cut and its tiles written as ``<index>-<tile>.jpg``: flat, unique file
        names, so that either layout of Batch Transform's answers names them alike."""
        body = self._objects.read(self._objects.key_of(source_ref, (layout.LABELING_IMAGES,)))
        keys = []
        try:
            with detection.cut_for_transform(
                body, policy=self._policy, image_shape=self._image_shape
            ) as (plan, tiles):
                for source, (_, payload) in enumerate(tiles):
                    key = f"{folder}{training.TILE_IMAGES}{index}-{source}.jpg"
                    self._objects.put(key, payload, TILE_CONTENT_TYPE)
                    keys.append(key)
        except InputError as error:
            raise InputError(f"{source_ref}: {error}") from None
        return TileSet.of(source_ref, plan, keys)

    def _write_manifest(self, folder: str) -> str:
        """The manifest of every tile the parts under ``tiles/tile-sets/`` record, streamed
        to S3 as it is written (a few thousand photos are hundreds of thousands of tiles)."""
        parts = sorted(self._objects.keys_under(f"{folder}{training.TILE_SETS}"))
        tile_sets = read_tile_sets(self._objects.read(part) for part in parts)
        images = f"{folder}{training.TILE_IMAGES}"
        names = (key.removeprefix(images) for tile_set in tile_sets.values()
                 for key in tile_set.tiles)  # fmt: skip
        key = f"{folder}{training.TILES_MANIFEST_FILE}"
        self._objects.upload_chunks(
            key, transform_manifest_chunks(self._objects.uri(images), names), JSON_CONTENT_TYPE
        )
        return self._objects.uri(key)
