"""Start one Ground Truth bounding-box job per labeling request; announce completed jobs.

The AWS calls live here, over injected clients, so that tests hand in moto-backed or
Stubber-wrapped ones; every decision is made by ``counting_core.datasets.labeling``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from counting_core.constants import JSON_CONTENT_TYPE
from counting_core.contracts.labeling_launcher import Environment
from counting_core.datasets import labeling
from counting_core.errors import InputError

WORKER_TEMPLATE = Path(__file__).with_name("worker_template.liquid.html")
# CreateLabelingJob's answer to a name already taken: this request version already started.
JOB_NAME_TAKEN = "ResourceInUse"
# Its answer to a request it cannot run (no retry helps): a rejection, like a bad request.
REQUEST_REFUSED = "ValidationException"
# Keys per ListObjectsV2 call (S3's maximum); a batch can span many pages.
LISTING_PAGE_SIZE = 1000


class LabelingLauncher:
    def __init__(
        self,
        environment: Environment,
        *,
        s3: Any,
        sagemaker: Any,
        events: Any,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._s3 = s3
        self._sagemaker = sagemaker
        self._events = events
        self._environment = environment
        # Jobs start where the SageMaker client calls: the PRE-/ACS- functions are that Region's.
        self._region: str = sagemaker.meta.region_name
        self._clock = clock
        self._worker_template = WORKER_TEMPLATE.read_text(encoding="utf-8")

    def launch(self, bucket: str, key: str, version: str | None) -> dict[str, str]:
        """Start the job a request upload asks for, or write why not beside the request."""
        if bucket != self._environment.bucket or not labeling.is_request_key(key):
            return {"status": "ignored", "request": key}
        try:
            request = labeling.parse_request_json(self._read(bucket, key, version), bucket=bucket)
            # Checked before anything is written: a Region without Ground Truth starts nothing.
            labeling.bounding_box_lambda_arns(self._region)
            manifest = self._input_manifest(bucket, request.image_prefix)
        except InputError as error:
            return self._reject(bucket, key, str(error))

        # The same upload delivered twice asks for the same job name (see unique_job_name).
        request_version = f"{bucket}/{key}#{version}" if version else None
        job_name = labeling.unique_job_name(self._environment.job_prefix, request_version)
        job = labeling.build_create_labeling_job_request(
            request=request,
            job_name=job_name,
            bucket=bucket,
            role_arn=self._environment.role_arn,
            workteam_arn=self._environment.workteam_arn,
            kms_key_arn=self._environment.kms_key_arn,
            region=self._region,
            defaults=self._environment.task_defaults(),
        )
        try:
            # Every value against CreateLabelingJob's rules, before anything is written.
            labeling.check_create_labeling_job_request(job)
        except InputError as error:
            return self._reject(bucket, key, str(error))
        written = self._write_inputs(bucket, job_name, request, manifest)
        try:
            self._sagemaker.create_labeling_job(**job)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code == JOB_NAME_TAKEN:  # the inputs are that job's: they stay
                return {"status": "already started", "request": key, "labelingJobName": job_name}
            # No job uses the inputs: a refused or retried request leaves none behind.
            self._delete(bucket, written)
            if code != REQUEST_REFUSED:
                raise
            message = error.response.get("Error", {}).get("Message", "")
            return self._reject(bucket, key, f"CreateLabelingJob refused the request: {message}")
        return {"status": "started", "request": key, "labelingJobName": job_name}

    def announce_completion(self, labeling_job_arn: str) -> dict[str, str]:
        """Put the completed job's output manifest on the default bus for training."""
        job_name = labeling.job_name_from_arn(labeling_job_arn)
        job = self._sagemaker.describe_labeling_job(LabelingJobName=job_name)
        if job["LabelingJobStatus"] != labeling.COMPLETED:
            return {"status": "ignored", "labelingJobName": job_name}
        manifest_uri = job["LabelingJobOutput"]["OutputDatasetS3Uri"]
        entry = labeling.completion_event(
            source=self._environment.event_source,
            job_name=job_name,
            manifest_uri=manifest_uri,
            label_attribute=job["LabelAttributeName"],
        )
        response = self._events.put_events(Entries=[entry])
        if response.get("FailedEntryCount"):
            # Raised so that Lambda retries the asynchronous invocation, then dead-letters it.
            failure = response["Entries"][0]
            raise RuntimeError(
                f"PutEvents refused the completion of {job_name}: "
                f"{failure.get('ErrorCode')}: {failure.get('ErrorMessage')}"
            )
        return {"status": "announced", "labelingJobName": job_name, "manifestUri": manifest_uri}

    def _read(self, bucket: str, key: str, version: str | None) -> bytes:
        request = {"Bucket": bucket, "Key": key}
        if version:
            request["VersionId"] = version
        # One byte more than a request may have: enough to refuse a larger one unread.
        body: bytes = self._s3.get_object(**request)["Body"].read(labeling.MAX_REQUEST_BYTES + 1)
        return body

    def _input_manifest(self, bucket: str, prefix: str) -> str:
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": LISTING_PAGE_SIZE}
        )
        keys = sorted(
            item["Key"]
            for page in pages
            for item in page.get("Contents", [])
            if labeling.is_image_key(item["Key"])
        )
        try:
            return labeling.build_input_manifest(bucket, keys)
        except InputError as error:
            raise InputError(f"s3://{bucket}/{prefix}: {error}") from None

    def _write_inputs(
        self, bucket: str, job_name: str, request: labeling.LabelingRequest, manifest: str
    ) -> list[str]:
        """Write the job's three inputs (all or none) and return their keys."""
        inputs = labeling.JobInputs.for_job(job_name)
        categories = labeling.label_category_config(request.labels)
        template = labeling.render_worker_template(self._worker_template, request)
        # Every body is encoded before the first is written.
        bodies = [
            (key, body.encode("utf-8"), content_type)
            for key, body, content_type in (
                (inputs.manifest_key, manifest, "application/jsonlines"),
                (inputs.categories_key, json.dumps(categories, indent=2), JSON_CONTENT_TYPE),
                (inputs.template_key, template, "text/html"),
            )
        ]
        written: list[str] = []
        try:
            for key, body, content_type in bodies:
                self._s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
                written.append(key)
        except Exception:
            self._delete(bucket, written)
            raise
        return written

    def _delete(self, bucket: str, keys: list[str]) -> None:
        if keys:
            self._s3.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True}
            )

    def _reject(self, bucket: str, key: str, reason: str) -> dict[str, str]:
        document = labeling.rejection_document(key, reason, self._clock())
        self._s3.put_object(
            Bucket=bucket,
            Key=labeling.rejection_key(key),
            Body=document.model_dump_json(indent=2).encode(),
            ContentType=JSON_CONTENT_TYPE,
        )
        return {"status": "rejected", "request": key, "reason": document.reason}
