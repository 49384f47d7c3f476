"""A small stand-in for Label Studio's REST API on 127.0.0.1, for the studio project tests.

It answers the calls the studio project function makes, as label-studio 1.23.2 answers them
(paths, pagination shapes, error bodies, the model_version check), holds what was created,
and records every call. The same calls against the real Label Studio are made by the slow
test (tests/lambdas/test_label_studio_round_trip.py).
"""

from __future__ import annotations

import json
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "fake-label-studio-token-0123456789"


@dataclass
class FakeLabelStudio:
    """What the fake holds: projects, storages, tasks and predictions by id, every call
    made (method, path), the images a storage sync finds, and CloudFormation's answers."""

    url: str = ""
    projects: dict[int, dict[str, Any]] = field(default_factory=dict)
    storages: dict[str, dict[int, dict[str, Any]]] = field(
        default_factory=lambda: {"import": {}, "export": {}}
    )
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    predictions: dict[int, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    # What syncing the source storage finds under its prefix (image URIs).
    images: list[str] = field(default_factory=list)
    sync_fails: bool = False
    answers: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: iter(range(1, 10_000)))

    def writes(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path in self.calls if method != "GET"]

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        self.calls.append((method, path))
        for pattern, action in self._routes():
            match = re.fullmatch(pattern, f"{method} {path}")
            if match:
                return action(query, body, *map(int, match.groups()))
        return 404, {"detail": "Not found."}

    def _routes(self) -> list[tuple[str, Any]]:
        return [
            (r"GET /api/projects/", self._list_projects),
            (r"POST /api/projects/", self._create_project),
            (r"PATCH /api/projects/(\d+)/", self._update_project),
            (r"GET /api/storages/s3/", lambda query, _: self._list_storages("import", query)),
            (r"POST /api/storages/s3/", lambda _, body: self._create_storage("import", body)),
            (r"PATCH /api/storages/s3/(\d+)", lambda _, body, i: self._update("import", i, body)),
            (r"POST /api/storages/s3/(\d+)/sync", self._sync),
            (r"GET /api/storages/export/s3", lambda query, _: self._list_storages("export", query)),
            (r"POST /api/storages/export/s3", lambda _, body: self._create_storage("export", body)),
            (r"PATCH /api/storages/export/s3/(\d+)", lambda _, b, i: self._update("export", i, b)),
            (r"GET /api/tasks/", self._list_tasks),
            (r"GET /api/predictions/", self._list_predictions),
            (r"POST /api/predictions/", self._create_prediction),
            (r"DELETE /api/predictions/(\d+)/", self._delete_prediction),
        ]

    def _list_projects(self, query: dict[str, str], _: Any) -> tuple[int, Any]:
        title = query.get("title", "").lower()
        found = [project for project in self.projects.values() if title in project["title"].lower()]
        return 200, {"count": len(found), "next": None, "previous": None, "results": found}

    def _create_project(self, _: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        project = {"id": next(self._ids), "model_version": "", **body}
        self.projects[project["id"]] = _parsed(project)
        return 201, project

    def _update_project(self, _: dict[str, str], body: dict[str, Any], pk: int) -> tuple[int, Any]:
        version = body.get("model_version")
        if version and not any(
            prediction["model_version"] == version for prediction in self.predictions.values()
        ):
            message = "Model version doesn't exist either as live model or as static predictions."
            return 400, _refused({"model_version": [message]})
        self.projects[pk] = _parsed({**self.projects[pk], **body})
        return 200, self.projects[pk]

    def _list_storages(self, kind: str, query: dict[str, str]) -> tuple[int, Any]:
        project = int(query["project"])
        return 200, [s for s in self.storages[kind].values() if s["project"] == project]

    def _create_storage(self, kind: str, body: dict[str, Any]) -> tuple[int, Any]:
        storage = {"id": next(self._ids), "status": "initialized", **body}
        self.storages[kind][storage["id"]] = storage
        return 201, storage

    def _update(self, kind: str, pk: int, body: dict[str, Any]) -> tuple[int, Any]:
        self.storages[kind][pk].update(body)
        return 200, self.storages[kind][pk]

    def _sync(self, _: dict[str, str], __: Any, pk: int) -> tuple[int, Any]:
        storage = self.storages["import"][pk]
        if self.sync_fails:
            storage.update(status="failed", traceback="Traceback ...\nClientError: AccessDenied")
            return 200, storage
        known = {task["data"]["image"] for task in self.tasks.values()}
        for image in self.images:
            if image not in known:
                task_id = next(self._ids)
                self.tasks[task_id] = {
                    "id": task_id,
                    "project": storage["project"],
                    "data": {"image": image},
                }
        storage.update(status="completed")
        return 200, storage

    def _list_tasks(self, query: dict[str, str], _: Any) -> tuple[int, Any]:
        found = [t for t in self.tasks.values() if t["project"] == int(query["project"])]
        page, size = int(query["page"]), int(query["page_size"])
        return 200, {"total": len(found), "tasks": found[(page - 1) * size : page * size]}

    def _list_predictions(self, query: dict[str, str], _: Any) -> tuple[int, Any]:
        task = int(query["task"])
        return 200, [p for p in self.predictions.values() if p["task"] == task]

    def _create_prediction(self, _: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        prediction = {"id": next(self._ids), **body}
        self.predictions[prediction["id"]] = prediction
        return 201, prediction

    def _delete_prediction(self, _: dict[str, str], __: Any, pk: int) -> tuple[int, Any]:
        del self.predictions[pk]
        return 204, None


def _parsed(project: dict[str, Any]) -> dict[str, Any]:
    """The project with ``parsed_label_config`` as Label Studio derives it."""
    root = ET.fromstring(project["label_config"])  # noqa: S314 (the tests' own XML)
    tools = {
        tool.get("name"): {
            "type": tool.tag,
            "to_name": [tool.get("toName")],
            "labels": [label.get("value") for label in tool.iter("Label")],
        }
        for tool in root.iter("RectangleLabels")
    }
    return {**project, "parsed_label_config": tools}


def _refused(errors: dict[str, list[str]]) -> dict[str, Any]:
    """Label Studio's answer to refused input (core/utils/common.py)."""
    return {"status_code": 400, "detail": "Validation error", "validation_errors": errors}


@contextmanager
def running_fake_label_studio() -> Iterator[FakeLabelStudio]:
    """The fake, listening on 127.0.0.1 (a free port) until the block ends; it also takes
    CloudFormation's answers, PUT to ``<url>/cloudformation-answer``."""
    studio = FakeLabelStudio()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            address = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if method == "PUT" and address.path == "/cloudformation-answer":
                studio.answers.append((dict(self.headers), json.loads(raw)))
                status, answer = 200, None
            elif self.headers.get("Authorization") != f"Token {TOKEN}":
                status, answer = 401, {"detail": "Invalid token."}
            else:
                query = {key: values[-1] for key, values in parse_qs(address.query).items()}
                body = json.loads(raw) if raw else None
                status, answer = studio.handle(method, address.path, query, body)
            text = b"" if answer is None else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def do_PATCH(self) -> None:
            self._answer("PATCH")

        def do_PUT(self) -> None:
            self._answer("PUT")

        def do_DELETE(self) -> None:
            self._answer("DELETE")

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the calls are recorded."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    studio.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield studio
    finally:
        server.shutdown()
        server.server_close()
