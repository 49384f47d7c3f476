"""Label Studio's exports become the stage's training manifest: the studio exports Lambda's work.

An object created under ``labeling/studio/exports/`` (a task Label Studio's target storage
wrote as ``<task id>.json``, or a whole JSON export someone uploaded there) rebuilds the
manifest of every task under that prefix with ``counting_core.datasets.label_studio``:
each task once, the most recently written object winning, so a task annotated again
replaces its earlier version. The manifest goes to ``labeling/studio/manifests/``
(``studio.manifest``, with ``studio.json`` saying what went in). An export that cannot
convert gets ``studio.rejected.json`` with the one-line reason, and is not retried; other
failures raise, so Lambda retries and then dead-letters the event.

With ``START_TRAINING``, a whole export (a JSON array: someone said "this is the data
set") also starts a training run: the manifest is copied under ``training/requests/``.
Tasks the target storage writes one by one only refresh the manifest.

Every task object is read on every event: fine for the thousands of images a labeling
project holds; the objects are small (one task each).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from counting_core import json_input, layout
from counting_core.contracts.events import ObjectCreated
from counting_core.contracts.studio_exports import Environment
from counting_core.datasets import manifest
from counting_core.datasets.coco import CREATION_DATE_FORMAT
from counting_core.datasets.label_studio import label_studio_to_manifest
from counting_core.errors import InputError

MANIFEST_KEY = f"{layout.STUDIO_MANIFESTS}studio.manifest"
SUMMARY_KEY = f"{layout.STUDIO_MANIFESTS}studio.json"
REJECTED_KEY = f"{layout.STUDIO_MANIFESTS}studio.rejected.json"


class StudioExports:
    """Rebuilds the studio manifest of one stage's bucket (``environment``) with ``s3``."""

    def __init__(self, environment: Environment, *, s3: Any) -> None:
        self._environment = environment
        self._s3 = s3

    def convert(self, created: ObjectCreated, now: datetime | None = None) -> dict[str, Any]:
        """The manifest of every task under the export prefix, after ``created`` was written;
        the summary written beside it (or the rejection)."""
        environment = self._environment
        key = created.object_version().key
        now = now or datetime.now(UTC)
        try:
            tasks, whole_export = self.read_tasks(key)
            conversion = label_studio_to_manifest(
                tasks,
                label_attribute=environment.label_attribute,
                creation_date=now.strftime(CREATION_DATE_FORMAT),
                job_name="label-studio",
                class_names=environment.class_names or None,
                rotated=environment.rotated_boxes,
            )
        except InputError as error:
            self._put(REJECTED_KEY, json.dumps({"trigger": key, "error": str(error)}, indent=2))
            return {"rejected": str(error), "trigger": key}
        text = manifest.manifest_text(conversion.lines)
        self._put(MANIFEST_KEY, text)
        outcome: dict[str, Any] = {
            **conversion.summary(),
            "manifest": f"s3://{environment.bucket}/{MANIFEST_KEY}",
        }
        if environment.start_training and whole_export and conversion.lines:
            request = f"{layout.TRAINING_REQUESTS}studio-{now:%Y%m%dT%H%M%S}.manifest"
            self._put(request, text)
            outcome["training_request"] = f"s3://{environment.bucket}/{request}"
        self._put(SUMMARY_KEY, json.dumps(outcome, indent=2))
        return {**outcome, "summary": conversion.summary_line(), "trigger": key}

    def read_tasks(self, trigger: str) -> tuple[list[Any], bool]:
        """Every task under the export prefix, once each, and whether ``trigger`` is a whole
        export (a JSON array)."""
        bucket = self._environment.bucket
        listed: list[dict[str, Any]] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=layout.STUDIO_EXPORTS
        ):
            listed.extend(
                item for item in page.get("Contents", []) if item["Key"].endswith(".json")
            )
        by_id: dict[object, Any] = {}
        whole_export = False
        # Oldest first, so that a task written again replaces what an earlier object held.
        for item in sorted(listed, key=lambda item: (item["LastModified"], item["Key"])):
            body = self._s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            try:
                content = json_input.loads(body)
            except InputError as error:
                raise InputError(f"{item['Key']}: {error}") from None
            tasks = content if isinstance(content, list) else [content]
            whole_export |= item["Key"] == trigger and isinstance(content, list)
            for index, task in enumerate(tasks):
                task_id = task.get("id") if isinstance(task, dict) else None
                by_id[task_id if task_id is not None else (item["Key"], index)] = task
        return list(by_id.values()), whole_export

    def _put(self, key: str, body: str) -> None:
        content_type = "application/json" if key.endswith(".json") else "application/jsonlines"
        self._s3.put_object(
            Bucket=self._environment.bucket,
            Key=key,
            Body=body.encode("utf-8"),
            ContentType=content_type,
        )
