"""The stage's Label Studio project, kept in step over Label Studio's REST API.

``set_up`` (on every deployment that changes the custom resource) creates the project if it
is missing, else updates what differs: its labeling interface from ``labeling.studio.
class_names``, the source storage on ``labeling/images/`` and the target storage on
``labeling/studio/exports/``, both without keys. The project is found by its title, so
running it again changes nothing. ``review`` (on each review request uploaded) syncs the
source storage, so that every image under ``labeling/images/`` has its task, and puts the
model's boxes on the tasks of the request's images as predictions under the model's
version, replacing what an earlier upload of the same version put there; the project then
shows that version's predictions to labelers. What each sends is
``counting_core.datasets.label_studio_project``'s; the paths are label-studio 1.23.2's
(``projects/urls.py``, ``io_storages/urls.py``, ``tasks/urls.py``, ``data_manager/urls.py``).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from counting_core.contracts.events import ObjectCreated
from counting_core.contracts.studio_project import Environment
from counting_core.datasets.label_studio_project import (
    IMAGES_STORAGE_TITLE,
    PLACEHOLDER_KEY,
    PLACEHOLDER_TEXT,
    REVIEW_REQUEST_SUFFIX,
    ReviewRequest,
    changed_fields,
    exports_storage_fields,
    images_storage_fields,
    project_fields,
    project_labels,
    tasks_by_image,
    unknown_labels,
)
from counting_core.errors import InputError, describe_validation_error
from lambdas.studio_project.studio_api import StudioApi, StudioRefused

PROJECTS = "/api/projects/"
# Source (import) storages are listed under a path with a trailing slash, target (export)
# storages under one without; one storage's path has none in both.
IMAGES_STORAGES = ("/api/storages/s3/", "/api/storages/s3/{id}")
EXPORTS_STORAGES = ("/api/storages/export/s3", "/api/storages/export/s3/{id}")
SYNC = "/api/storages/s3/{id}/sync"
TASKS = "/api/tasks/"
PREDICTIONS = "/api/predictions/"
# Projects and tasks listed per page (Label Studio's largest project page is 100).
PROJECT_PAGE = 100
TASK_PAGE = 500
# What a review leaves beside its request.
IMPORTED_SUFFIX = ".imported.json"
REJECTED_SUFFIX = ".rejected.json"


class StudioProject:
    """One stage's project: its settings (``environment``), Label Studio (``api``) and the
    data bucket (``s3``)."""

    def __init__(self, environment: Environment, *, api: StudioApi, s3: Any) -> None:
        self._environment = environment
        self._api = api
        self._s3 = s3

    def set_up(self, class_names: tuple[str, ...]) -> int:
        """Create or update the project and its storages; the project's id."""
        api, bucket = self._api, self._environment.bucket
        wanted = project_fields(self._environment.project_title, class_names)
        project = self.find_project()
        if project is None:
            project = api.post(PROJECTS, wanted)
        elif changes := changed_fields(wanted, project):
            project = api.patch(f"{PROJECTS}{project['id']}/", changes)
        project_id: int = project["id"]
        # The source storage is refused over an empty prefix.
        self._s3.put_object(
            Bucket=bucket,
            Key=PLACEHOLDER_KEY,
            Body=PLACEHOLDER_TEXT.encode(),
            ContentType="text/plain; charset=utf-8",
        )
        self._keep_storage(IMAGES_STORAGES, images_storage_fields(bucket), project_id)
        self._keep_storage(EXPORTS_STORAGES, exports_storage_fields(bucket), project_id)
        return project_id

    def find_project(self) -> dict[str, Any] | None:
        """The project titled as the stage's, if there is one (Label Studio's title filter
        matches parts of titles, whatever their case)."""
        title = self._environment.project_title
        found = [
            project
            for project in self._api.get(PROJECTS, title=title, page_size=PROJECT_PAGE)["results"]
            if project["title"] == title
        ]
        if len(found) > 1:
            raise InputError(
                f"{len(found)} Label Studio projects are titled {title!r} (ids "
                f"{', '.join(str(project['id']) for project in found)}): rename all but one"
            )
        return found[0] if found else None

    def _keep_storage(
        self, paths: tuple[str, str], wanted: dict[str, Any], project_id: int
    ) -> dict[str, Any]:
        listed, one = paths
        storage = self._storage(listed, wanted["title"], project_id)
        if storage is None:
            created: dict[str, Any] = self._api.post(listed, {"project": project_id, **wanted})
            return created
        if changes := changed_fields(wanted, storage):
            updated: dict[str, Any] = self._api.patch(one.format(id=storage["id"]), changes)
            return updated
        return storage

    def _storage(self, listed: str, title: str, project_id: int) -> dict[str, Any] | None:
        storages = [
            storage
            for storage in self._api.get(listed, project=project_id)
            if storage.get("title") == title
        ]
        return storages[0] if storages else None

    def review(self, created: ObjectCreated) -> dict[str, Any]:
        """Put the uploaded review request's predictions on their tasks; the outcome written
        beside the request (``<name>.imported.json``, or ``<name>.rejected.json`` with the
        one-line reason when the request or Label Studio refuses it). Label Studio not
        answering raises, so that Lambda tries again."""
        key = created.object_version().key
        name = key.removesuffix(REVIEW_REQUEST_SUFFIX)
        try:
            request = self._read_request(key)
            outcome = {"request": key, **self._predict(request)}
        except (InputError, StudioRefused) as error:
            outcome = {"request": key, "rejected": str(error)}
            self._put(name + REJECTED_SUFFIX, outcome)
            return outcome
        self._put(name + IMPORTED_SUFFIX, outcome)
        return outcome

    def _read_request(self, key: str) -> ReviewRequest:
        body = self._s3.get_object(Bucket=self._environment.bucket, Key=key)["Body"].read()
        try:
            return ReviewRequest.model_validate_json(body)
        except ValidationError as error:
            raise InputError(
                f"not a review request: {describe_validation_error(error)[0]}"
            ) from None

    def _predict(self, request: ReviewRequest) -> dict[str, Any]:
        api = self._api
        project = self.find_project()
        if project is None:
            raise InputError(
                f"no Label Studio project is titled {self._environment.project_title!r}: "
                "the studio stack's deployment makes it"
            )
        project_id = project["id"]
        labels = project_labels(project)
        if unknown := unknown_labels(request, labels):
            raise InputError(
                f"the model's labels {', '.join(map(repr, unknown))} are not the project's "
                f"({', '.join(map(repr, labels))})"
            )
        storage = self._storage(IMAGES_STORAGES[0], IMAGES_STORAGE_TITLE, project_id)
        if storage is None:
            raise InputError(
                f"the project has no storage titled {IMAGES_STORAGE_TITLE!r}: deploy the "
                "studio stack again to restore it"
            )
        synced = api.post(SYNC.format(id=storage["id"]))
        if synced.get("status") == "failed":
            problem = " ".join(str(synced.get("traceback") or "").split()[-12:])
            raise InputError(f"syncing {IMAGES_STORAGE_TITLE!r} failed: {problem}")
        by_image = tasks_by_image(self._tasks(project_id))
        if missing := [item.image for item in request.predictions if item.image not in by_image]:
            raise InputError(
                f"{len(missing)} of the images have no task after syncing, e.g. {missing[0]}: "
                "is it still there?"
            )
        tasks = []
        for item in request.predictions:
            for task_id in by_image[item.image]:
                self._replace_prediction(task_id, request.model_version, item.model_dump())
                tasks.append(task_id)
        # Labelers see this version's predictions (it must name predictions that exist).
        api.patch(f"{PROJECTS}{project_id}/", {"model_version": request.model_version})
        return {
            "project": project_id,
            "model_version": request.model_version,
            "tasks": sorted(tasks),
        }

    def _replace_prediction(self, task_id: int, model_version: str, item: dict[str, Any]) -> None:
        api = self._api
        for earlier in api.get(PREDICTIONS, task=task_id):
            if earlier.get("model_version") == model_version:
                api.delete(f"{PREDICTIONS}{earlier['id']}/")
        api.post(
            PREDICTIONS,
            {
                "task": task_id,
                "model_version": model_version,
                "score": item["score"],
                "result": item["result"],
            },
        )

    def _tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task of the project, its data as stored (``s3://`` URIs, not links)."""
        tasks: list[dict[str, Any]] = []
        page = 1
        while True:
            listed = self._api.get(
                TASKS, project=project_id, page=page, page_size=TASK_PAGE, resolve_uri="false"
            )
            tasks.extend(listed["tasks"])
            if not listed["tasks"] or len(tasks) >= listed["total"]:
                return tasks
            page += 1

    def _put(self, key: str, outcome: dict[str, Any]) -> None:
        self._s3.put_object(
            Bucket=self._environment.bucket,
            Key=key,
            Body=json.dumps(outcome, indent=2).encode(),
            ContentType="application/json",
        )
