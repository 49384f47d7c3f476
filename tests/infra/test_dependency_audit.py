"""The dependency audit says when it could not reach a vulnerability service, never 'passed'."""

from __future__ import annotations

import io
import urllib.error
import urllib.request

import pytest

from tools import dependency_audit

PINS = "# pins\n\nboto3==1.44.5\npillow==13.0.0\n"


@pytest.fixture
def constraints(tmp_path):
    path = tmp_path / "constraints.txt"
    path.write_text(PINS)
    return path


class Runs:
    def __init__(self, status: int) -> None:
        self.status = status
        self.commands: list[list[str]] = []

    def __call__(self, command: list[str]) -> int:
        self.commands.append(command)
        return self.status


def test_no_service_answering_is_reported_as_not_audited(constraints, capsys, monkeypatch):
    monkeypatch.delenv("REQUIRE_DEPENDENCY_AUDIT", raising=False)
    runs = Runs(0)
    services = {"pypi": lambda name, version: "HTTP 404", "osv": lambda name, version: "no DNS"}

    status = dependency_audit.main([str(constraints)], services, runs)

    assert status == 0
    assert runs.commands == []
    assert capsys.readouterr().out == (
        "dependency audit: NOT AUDITED: no vulnerability service answered about "
        "boto3==1.44.5 (pypi: HTTP 404; osv: no DNS): constraints.txt was not checked\n"
    )


def test_a_required_audit_fails_when_no_service_answers(constraints, monkeypatch):
    monkeypatch.setenv("REQUIRE_DEPENDENCY_AUDIT", "1")
    services = {"pypi": lambda name, version: "HTTP 404"}

    assert dependency_audit.main([str(constraints)], services, Runs(0)) == 1


def test_the_first_service_that_answers_audits_every_pin_strictly(constraints, capsys):
    runs = Runs(1)  # pip-audit's status when it finds a vulnerability
    asked = []

    def pypi(name, version):
        asked.append(("pypi", name, version))
        return "HTTP 404"

    def osv(name, version):
        asked.append(("osv", name, version))

    status = dependency_audit.main([str(constraints)], {"pypi": pypi, "osv": osv}, runs)

    assert status == 1
    assert asked == [("pypi", "boto3", "1.44.5"), ("osv", "boto3", "1.44.5")]
    [command] = runs.commands
    assert command[1:] == [
        "-m", "pip_audit", "--requirement", str(constraints), "--no-deps", "--disable-pip",
        "--strict", "--vulnerability-service", "osv", "--progress-spinner", "off",
    ]  # fmt: skip
    assert capsys.readouterr().out == "dependency audit: constraints.txt against osv\n"


def test_a_file_without_pins_is_named(tmp_path):
    empty = tmp_path / "constraints.txt"
    empty.write_text("# nothing pinned\nboto3\n")

    with pytest.raises(ValueError, match=r"^constraints.txt pins no package"):
        dependency_audit.first_pin(empty)


def test_a_missing_release_json_is_a_reason_not_an_answer(monkeypatch):
    def not_found(request, timeout):
        raise urllib.error.HTTPError(request.full_url, 404, "Not Found", {}, None)  # type: ignore[arg-type]

    monkeypatch.setattr(urllib.request, "urlopen", not_found)

    assert dependency_audit.probe_pypi("boto3", "1.44.5") == (
        "HTTP 404 from https://pypi.org/pypi/boto3/1.44.5/json"
    )


def test_a_json_answer_is_an_answer(monkeypatch):
    sent = []

    def answers(request, timeout):
        sent.append((request.full_url, request.data, timeout))
        return io.BytesIO(b'{"vulns": []}')

    monkeypatch.setattr(urllib.request, "urlopen", answers)

    assert dependency_audit.probe_osv("boto3", "1.44.5") is None
    assert sent == [
        (
            "https://api.osv.dev/v1/query",
            b'{"package": {"name": "boto3", "ecosystem": "PyPI"}, "version": "1.44.5"}',
            15,
        )
    ]
