"""Prepare one run's training data: read the labeled manifest, split it, write the channels.

The AWS calls live here, over an injected S3 client, so tests hand in a moto-backed one;
every decision is made by ``counting_core.datasets.manifest`` and ``counting_core.models.training``.

The manifest is streamed to a file in /tmp and split from there, and the channels are
written to /tmp before they are uploaded, so memory stays flat however many images there
are; the function's ephemeral storage bounds the manifest size instead (see
``stacks/components/training/prepare.py``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from counting_core.contracts.prepare_training_data import Environment, PreparedRun, PrepareRequest
from counting_core.datasets import manifest
from counting_core.errors import InputError
from counting_core.models import training
from counting_core.models.training import DataNotTrainable

MANIFEST_CONTENT_TYPE = "application/jsonlines"
# Bytes per read while streaming the manifest from S3 into /tmp.
DOWNLOAD_CHUNK = 1 << 20


class TrainingDataPreparer:
    def __init__(self, environment: Environment, *, s3: Any) -> None:
        self._s3 = s3
        self._environment = environment
        self._bucket = environment.bucket

    def prepare(self, prepare: PrepareRequest) -> PreparedRun:
        """Split the request's manifest into the run's channels and report on it."""
        request = prepare.request
        key = training.manifest_key(request.manifest_uri, self._bucket)
        name = training.run_name(
            self._environment.name_prefix, prepare.execution_id, prepare.started_at
        )
        folder = training.run_folder(name)
        image_source = training.image_prefix_uri(self._bucket)
        with tempfile.TemporaryDirectory() as scratch:
            local = Path(scratch)
            self._download(key, local / "input.manifest")
            try:
                with (local / "input.manifest").open("rb") as file:
                    split = manifest.split(
                        file,
                        label_attribute=request.label_attribute,
                        validation_fraction=self._environment.validation_fraction,
                        seed=self._environment.split_seed,
                        image_source=image_source,
                        keep_empty=self._environment.keep_images_without_boxes,
                    )
                    with (
                        (local / training.TRAIN_FILE).open("wb") as train,
                        (local / training.VALIDATION_FILE).open("wb") as validation,
                    ):
                        split.write(train, validation)
            except InputError as error:
                raise DataNotTrainable(f"{request.manifest_uri}: {error}") from None
            for file_name in (training.TRAIN_FILE, training.VALIDATION_FILE):
                self._upload(f"{folder}{file_name}", local / file_name)
            # What the run's Batch Transform counts to evaluate the model (the images checked
            # above), and every image of the run: the torchvision job's images channel.
            self._write(
                f"{folder}{training.VALIDATION_IMAGES_FILE}",
                images_manifest([local / training.VALIDATION_FILE], image_source),
                "application/json",
            )
            self._write(
                f"{folder}{training.IMAGES_FILE}",
                images_manifest(
                    [local / training.TRAIN_FILE, local / training.VALIDATION_FILE], image_source
                ),
                "application/json",
            )

        report = {"run": name, "manifest": request.manifest_uri, **split.report()}
        if request.labeling_job_name:
            report["labeling_job"] = request.labeling_job_name
        self._write(
            f"{folder}{training.REPORT_FILE}", json.dumps(report, indent=2), "application/json"
        )
        return training.prepared_run(
            name=name, bucket=self._bucket, split=split.result, figures=split.result.figures()
        )

    def _download(self, key: str, path: Path) -> None:
        """Stream the manifest into ``path``; a missing object cannot train."""
        try:
            body = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"]
        except self._s3.exceptions.NoSuchKey:
            raise DataNotTrainable(f"s3://{self._bucket}/{key}: no such object") from None
        with path.open("wb") as file:
            shutil.copyfileobj(body, file, DOWNLOAD_CHUNK)

    def _upload(self, key: str, path: Path) -> None:
        # A file body is streamed: a channel of a million lines is never held in memory.
        with path.open("rb") as body:
            self._s3.put_object(
                Bucket=self._bucket, Key=key, Body=body, ContentType=MANIFEST_CONTENT_TYPE
            )

    def _write(self, key: str, text: str, content_type: str) -> None:
        self._s3.put_object(
            Bucket=self._bucket, Key=key, Body=text.encode("utf-8"), ContentType=content_type
        )


def images_manifest(channels: list[Path], image_source: str) -> str:
    """The images the ``channels`` (written above) list, as a ManifestFile."""

    def source_refs() -> Iterator[str]:
        for channel in channels:
            with channel.open("rb") as lines:
                yield from (json.loads(line)[manifest.SOURCE_REF] for line in lines)

    return training.transform_manifest(source_refs(), image_source)
