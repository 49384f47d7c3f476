"""Shared fixtures: no real AWS, the CDK context `cdk synth` sees, tiny images, a CLI runner.

Rules every test follows (tests/test_guidelines.py checks what a parser can see):

- Expected values never come from the code under test, its functions or its upper-case
  constants. Write them by hand, worked out in a comment or read from a hand-checked file
  or doc; to compare two runs of the same code (determinism, bytes vs text), call it on
  both sides or say ``# same code: <why>``; two production tables that must hold the same
  entries say ``# must agree: <why>``.
- ``pytest.raises`` names the exception, and the test checks its message or fields.
- Stubber stubs always give ``expected_params``; moto where it has the API.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.loaders
import pytest
from PIL import Image

import counting

ROOT = Path(__file__).resolve().parents[1]
GREY = (128, 128, 128)

MakeImage = Callable[..., bytes]
RunCli = Callable[..., tuple[int, str, str]]
# jsii runs Node.js from PATH: prefer the virtualenv's Node 24 over the machine's Node 20.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"

# moto gives every test a new boto3 session, whose loader would parse each service's JSON
# model again (SageMaker's is megabytes). Sessions share the parsed models instead, as the
# clients of one session already do. botocore edits a few S3 operation models in place on
# first use (botocore/handlers.py: the bucket leaves requestUri for authPath), an edit that
# leaves them the same however many clients make it, as one session's clients already rely
# on. This takes about 40 % off the handler tests.
_parsed_service_models: dict[tuple, Any] = {}
_load_service_model = botocore.loaders.Loader.load_service_model


def _shared_service_model(self, service_name, type_name, api_version=None):
    key = (tuple(self.search_paths), service_name, type_name, api_version)
    if key not in _parsed_service_models:
        _parsed_service_models[key] = _load_service_model(
            self, service_name, type_name, api_version
        )
    return _parsed_service_models[key]


botocore.loaders.Loader.load_service_model = _shared_service_model


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch):
    """Any boto3 client a test forgets to mock fails on fake credentials, never reaches AWS."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


class RunningTest:
    """Whether the test being set up carries the ``synth`` marker (``make unit`` skips those)."""

    marked_synth = False


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # tryfirst: before the test's fixtures, module-scoped ones included, are set up.
    RunningTest.marked_synth = item.get_closest_marker("synth") is not None


def require_synth_marker() -> None:
    """Fail a test that builds the CDK app without the ``synth`` marker."""
    if not RunningTest.marked_synth:
        pytest.fail("this test builds the CDK app: mark it @pytest.mark.synth", pytrace=False)


def cdk_context(**overrides) -> dict:
    """The context `cdk synth` would see: cdk.json's, plus `-c` style overrides."""
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    context.update(overrides)
    return context


def encode(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


@pytest.fixture
def make_image() -> MakeImage:
    """``make_image("PNG", (200, 100), colour=GREY, mode="RGB")``: an encoded plain image."""

    def make(
        image_format: str = "PNG",
        size: tuple[int, int] = (200, 100),
        *,
        colour: tuple[int, ...] = GREY,
        mode: str = "RGB",
    ) -> bytes:
        return encode(Image.new(mode, size, colour), image_format)

    return make


@pytest.fixture
def jpeg_200x100(make_image: MakeImage) -> bytes:
    return make_image("JPEG")


@pytest.fixture
def png_200x100(make_image: MakeImage) -> bytes:
    return make_image("PNG")


@pytest.fixture
def cli(capsys) -> RunCli:
    """``cli("count", path, ...)``: run ``counting`` and return (status, stdout, stderr).

    Going through counting.main keeps its error handling (one line, exit status 2).
    Arguments are turned into text, so paths can be passed as they are.
    """

    def run(*argv: object) -> tuple[int, str, str]:
        status = counting.main([str(arg) for arg in argv])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run
