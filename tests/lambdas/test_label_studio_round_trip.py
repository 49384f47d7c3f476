"""Images -> Label Studio -> export -> manifest, and review queue -> pre-labeled tasks, against
a real Label Studio.

The pinned ``label-studio`` (constraints-label-studio.txt) runs from its own virtualenv under
``.tools/`` (``make label-studio``, installed here on first use), on SQLite, listening on
127.0.0.1 only, with a moto server on 127.0.0.1 as its S3: the source storage reads the
images there and the target storage writes the labeled tasks there. Label Studio gets no
access keys, as on Fargate: its S3 client falls back to boto3's default credential chain,
here a shared credentials file (on Fargate, the task role). Everything Label Studio is asked
goes through the app's own code: the project set up by the studio project function's
service, the export converted by ``counting manifest from-label-studio`` and by the studio
exports function, the review queue made by the core and put on the tasks by the service.
Only what a person does in the browser (syncing the storage, drawing boxes, exporting) is
done here through the same API calls the browser makes.

It takes about a minute and a half on two CPU cores, most of it Label Studio's first start.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from PIL import Image

from counting_core.contracts.studio_exports import Environment as ExportsEnvironment
from counting_core.contracts.studio_project import Environment
from counting_core.datasets import label_studio_project
from counting_core.datasets.manifest import read_manifest
from lambdas.studio_exports import handler as exports_handler
from lambdas.studio_exports.service import StudioExports
from lambdas.studio_project import handler
from lambdas.studio_project.service import StudioProject
from lambdas.studio_project.studio_api import StudioApi
from tests.conftest import ROOT
from tests.lambdas.conftest import object_created

pytestmark = pytest.mark.slow

LABEL_STUDIO = ROOT / ".tools" / "label-studio" / "bin" / "label-studio"
BUCKET = "object-counting-dev-data-123456789012-us-east-1"
IMAGES = f"s3://{BUCKET}/labeling/images/street/"
# Made up for this test: the administrator's API token and password.
TOKEN = "0123456789abcdef0123456789abcdef01234567"
PASSWORD = "round-trip-password-1"
CLASSES = ("car", "truck", "自転車")
RUN = "counting-20261201-101500-a1b2c3"
STARTUP_SECONDS = 300


@pytest.fixture(scope="module")
def label_studio_installed() -> Path:
    """The pinned Label Studio, installed by the Makefile's recipe unless it is there."""
    installed = subprocess.run(
        ["make", "--no-print-directory", "label-studio"],  # noqa: S607 (the repository's make)
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if installed.returncode != 0 or not LABEL_STUDIO.exists():
        lines = (installed.stderr or installed.stdout).strip().splitlines() or ["no output"]
        pytest.skip(f"label-studio could not be installed here: {lines[-1]}")
    return LABEL_STUDIO


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto server on 127.0.0.1: Label Studio's S3 and the test's."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def studio_url(label_studio_installed, s3_endpoint, tmp_path_factory) -> Iterator[str]:
    """Label Studio on 127.0.0.1, its first administrator's token accepted as legacy tokens
    are on the stage (``--enable-legacy-api-token``)."""
    home = tmp_path_factory.mktemp("label-studio")
    credentials = home / "credentials"
    credentials.write_text(
        "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
    )
    port = free_port()
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "LABEL_STUDIO_BASE_DATA_DIR": str(home / "data"),
        "LABEL_STUDIO_USERNAME": "admin@example.com",
        "LABEL_STUDIO_PASSWORD": PASSWORD,
        "LABEL_STUDIO_USER_TOKEN": TOKEN,
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "FUTURE_SAVE_TASK_TO_STORAGE": "true",
        # No keys: the default chain finds the credentials file. S3_ENDPOINT is Label
        # Studio's own setting for an S3 other than AWS's (io_storages/s3/utils.py).
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
        "AWS_CONFIG_FILE": str(home / "no-config"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "S3_ENDPOINT": s3_endpoint,
    }
    log = (home / "label-studio.log").open("w")
    process = subprocess.Popen(
        [str(label_studio_installed), "start", "--no-browser", "--enable-legacy-api-token",
         "--internal-host", "127.0.0.1", "--port", str(port)],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (home / "label-studio.log").read_text()[-2000:]
                pytest.fail(f"Label Studio did not start:\n{tail}")
            time.sleep(1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health/", timeout=5) as answer:  # noqa: S310 (127.0.0.1)
            return answer.status == 200
    except OSError:
        return False


class RecordingApi(StudioApi):
    """The service's client, recording the calls that change something."""

    writes: list[tuple[str, str]]

    def call(self, method: str, path: str, **arguments: Any) -> Any:
        if method != "GET":
            self.writes.append((method, path))
        return super().call(method, path, **arguments)


def jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(buffer, "JPEG")
    return buffer.getvalue()


def box(label: str, size: tuple[int, int], *percent: float) -> dict:
    """A box as Label Studio's editor saves it: x, y, width and height in percent of the
    image, the image's size beside."""
    x, y, width, height = percent
    return {
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": size[0],
        "original_height": size[1],
        "image_rotation": 0,
        "value": {"x": x, "y": y, "width": width, "height": height, "rotation": 0,
                  "rectanglelabels": [label]},
    }  # fmt: skip


def annotations_of(manifest: Path) -> dict[str, tuple[list[dict], dict]]:
    with manifest.open("rb") as file:
        lines = [record.data for record in read_manifest(file)]
    return {
        line["source-ref"]: (line["vehicles"]["annotations"], line["vehicles"]["image_size"][0])
        for line in lines
    }


def test_images_round_trip_through_label_studio_and_the_review_queue_comes_back(
    studio_url, s3_endpoint, tmp_path, cli
):
    s3 = s3_client(s3_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    environment = Environment.read(
        {
            "BUCKET": BUCKET,
            "STUDIO_URL": studio_url,
            "API_TOKEN_SECRET": "arn:aws:secretsmanager:us-east-1:123456789012:secret:t-a1B2c3",
            "PROJECT_TITLE": "object-counting-dev",
            "POWERTOOLS_SERVICE_NAME": "studio-project",
            "POWERTOOLS_METRICS_NAMESPACE": "ObjectCounting",
        }
    )
    api = RecordingApi(studio_url, TOKEN, patience=30)
    api.writes = []
    service = StudioProject(environment, api=api, s3=s3)

    # 1. The project, set up by the app over an empty bucket, then left as it is.
    project_id = service.set_up(CLASSES)
    api.writes.clear()
    assert service.set_up(CLASSES) == project_id
    assert api.writes == []
    # A class added in cdk.json: the next deployment updates the labeling interface.
    service.set_up((*CLASSES, "bus"))
    assert api.writes == [("PATCH", f"/api/projects/{project_id}/")]
    project = api.get(f"/api/projects/{project_id}/")
    assert label_studio_project.project_labels(project) == [*CLASSES, "bus"]

    # 2. Images uploaded under labeling/images/, made tasks by syncing the source storage.
    sizes = {"1.jpg": (1000, 500), "2.jpg": (640, 480), "3.jpg": (800, 600)}
    for name, (width, height) in sizes.items():
        s3.put_object(Bucket=BUCKET, Key=f"labeling/images/street/{name}", Body=jpeg(width, height))
    (images_storage,) = api.get("/api/storages/s3/", project=project_id)
    assert api.post(f"/api/storages/s3/{images_storage['id']}/sync")["status"] == "completed"
    listed = api.get("/api/tasks/", project=project_id, page_size=100, resolve_uri="false")
    tasks = {
        image.removeprefix(IMAGES): ids[0]
        for image, ids in label_studio_project.tasks_by_image(listed["tasks"]).items()
    }
    assert sorted(tasks) == ["1.jpg", "2.jpg", "3.jpg"]  # README.txt is no task

    # 3. Boxes drawn: two on 1.jpg, one on 2.jpg; 3.jpg skipped by its labeler.
    api.post(f"/api/tasks/{tasks['1.jpg']}/annotations/", {"result": [
        box("car", sizes["1.jpg"], 10, 20, 30, 40),
        box("自転車", sizes["1.jpg"], 50, 50, 25, 25),
    ]})  # fmt: skip
    api.post(f"/api/tasks/{tasks['2.jpg']}/annotations/", {"result": [
        box("truck", sizes["2.jpg"], 12.5, 25, 25, 50),
    ]})  # fmt: skip
    api.post(f"/api/tasks/{tasks['3.jpg']}/annotations/", {"result": [], "was_cancelled": True})

    # 4. The project's JSON export, converted by the command.
    export = tmp_path / "export.json"
    request = urllib.request.Request(  # noqa: S310 (127.0.0.1)
        f"{studio_url}/api/projects/{project_id}/export?exportType=JSON",
        headers={"Authorization": f"Token {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 (127.0.0.1)
        export.write_bytes(answer.read())
    manifest = tmp_path / "studio.manifest"
    status, _, err = cli(
        "manifest", "from-label-studio", export, "--label-attribute", "vehicles",
        "--classes", ",".join(CLASSES), "--out", manifest,
    )  # fmt: skip
    assert (status, err.split(": ", 1)[1]) == (
        0,
        "imported 2 images with 3 boxes in 3 classes from 3 tasks; left out 1 task skipped "
        "by annotators\n",
    )
    # Percent x image size: 1000 x 500 -> car left 100, top 100, 300 x 200; 自転車 left
    # 500, top 250, 250 x 125. 640 x 480 -> truck left 80, top 120, 160 x 240.
    expected = {
        f"{IMAGES}1.jpg": (
            [
                {"class_id": 0, "left": 100, "top": 100, "width": 300, "height": 200},
                {"class_id": 2, "left": 500, "top": 250, "width": 250, "height": 125},
            ],
            {"width": 1000, "height": 500, "depth": 3},
        ),
        f"{IMAGES}2.jpg": (
            [{"class_id": 1, "left": 80, "top": 120, "width": 160, "height": 240}],
            {"width": 640, "height": 480, "depth": 3},
        ),
    }
    assert annotations_of(manifest) == expected
    status, out, _ = cli("manifest", "stats", manifest)
    assert status == 0
    stats = json.loads(out)
    assert (stats["images"], stats["objects"]) == (2, 3)

    # 5. The target storage wrote each labeled task: the exports function's manifest is
    # the same.
    written = s3.list_objects_v2(Bucket=BUCKET, Prefix="labeling/studio/exports/")["Contents"]
    keys = sorted(item["Key"] for item in written)
    assert keys == sorted(f"labeling/studio/exports/{tasks[name]}.json" for name in sizes)
    exports = StudioExports(
        ExportsEnvironment.read(
            {
                "BUCKET": BUCKET,
                "LABEL_ATTRIBUTE": "vehicles",
                "CLASS_NAMES": json.dumps(CLASSES),
                "ROTATED_BOXES": "refuse",
                "START_TRAINING": "false",
                "POWERTOOLS_SERVICE_NAME": "studio-exports",
                "POWERTOOLS_METRICS_NAMESPACE": "ObjectCounting",
            }
        ),
        s3=s3,
    )
    key = f"labeling/studio/exports/{tasks['2.jpg']}.json"
    converted = exports_handler.convert(
        object_created(BUCKET, key, s3.head_object(Bucket=BUCKET, Key=key)), exports
    )
    assert (converted["images"], converted["objects"], converted["cancelled"]) == (2, 3, 1)
    from_bucket = tmp_path / "from-bucket.manifest"
    from_bucket.write_bytes(
        s3.get_object(Bucket=BUCKET, Key="labeling/studio/manifests/studio.manifest")["Body"].read()
    )
    assert annotations_of(from_bucket) == expected

    # 6. The review queue: 1.jpg, and 4.jpg uploaded since the last sync (the review syncs).
    s3.put_object(Bucket=BUCKET, Key="labeling/images/street/4.jpg", Body=jpeg(400, 400))
    report = {
        "run": RUN,
        "review_queue": [
            {"source_ref": f"{IMAGES}1.jpg", "error": -1, "detections": [
                {"class_name": "car", "score": 0.9,
                 "box": {"xmin": 0.1, "ymin": 0.2, "xmax": 0.4, "ymax": 0.6}}]},
            {"source_ref": f"{IMAGES}4.jpg", "error": 2, "detections": [
                {"class_name": "truck", "score": 0.8,
                 "box": {"xmin": 0.25, "ymin": 0.5, "xmax": 0.75, "ymax": 1.0}},
                {"class_name": "truck", "score": 0.6,
                 "box": {"xmin": 0.0, "ymin": 0.0, "xmax": 0.125, "ymax": 0.25}}]},
        ],
    }  # fmt: skip
    evaluation = tmp_path / "evaluation.json"
    evaluation.write_text(json.dumps(report))
    key = label_studio_project.review_request_key(RUN)
    review = label_studio_project.review_request(report, bucket=BUCKET)
    put = s3.put_object(Bucket=BUCKET, Key=key, Body=review.model_dump_json().encode())

    outcome = handler.review(object_created(BUCKET, key, put), service)

    assert "rejected" not in outcome, outcome
    listed = api.get("/api/tasks/", project=project_id, page_size=100, resolve_uri="false")
    tasks = {
        image.removeprefix(IMAGES): ids[0]
        for image, ids in label_studio_project.tasks_by_image(listed["tasks"]).items()
    }
    assert outcome["tasks"] == sorted([tasks["1.jpg"], tasks["4.jpg"]])
    # Labelers are shown the run's boxes: the project's model version, each task's
    # predictions in percent of its image.
    assert api.get(f"/api/projects/{project_id}/")["model_version"] == RUN
    shown = {
        name: api.get(f"/api/tasks/{tasks[name]}/")["predictions"] for name in ("1.jpg", "4.jpg")
    }
    # 4.jpg: (0.8 + 0.6) / 2.
    assert {
        name: [(prediction["model_version"], prediction["score"]) for prediction in found]
        for name, found in shown.items()
    } == {"1.jpg": [(RUN, 0.9)], "4.jpg": [(RUN, 0.7)]}
    assert [region["value"] for region in shown["4.jpg"][0]["result"]] == [
        {"x": 25.0, "y": 50.0, "width": 50.0, "height": 50.0, "rotation": 0,
         "rectanglelabels": ["truck"]},
        {"x": 0.0, "y": 0.0, "width": 12.5, "height": 25.0, "rotation": 0,
         "rectanglelabels": ["truck"]},
    ]  # fmt: skip
    # The same review again replaces its predictions.
    handler.review(object_created(BUCKET, key, put), service)
    again = api.get(f"/api/tasks/{tasks['4.jpg']}/")["predictions"]
    assert len(again) == 1
