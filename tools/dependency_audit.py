"""Audit the pinned Python dependencies (constraints.txt) for known vulnerabilities.

Usage: python -m tools.dependency_audit [CONSTRAINTS]   (``make dependency-audit``, run by
``make test``; CONSTRAINTS defaults to constraints.txt, which pins every package that
requirements*.txt names, the Lambda layers' included)

pip-audit looks each pin up in a vulnerability service: PyPI's release JSON (its
``vulnerabilities`` list) or OSV. This first asks each service about one pin it must know, and:

- where one answers, runs ``pip-audit --strict`` against it: a known vulnerability, or a pin
  the service cannot look up, fails the audit;
- where neither answers, says NOT AUDITED and why on one line and exits 0, so that a machine
  that cannot reach them (this project's CI, docs/deploying.md) is neither failed nor told
  that nothing was found. ``REQUIRE_DEPENDENCY_AUDIT=1`` makes that an error instead.

Without the probe, pip-audit's PyPI service reports a release JSON it cannot get (HTTP 404)
as a skipped package and, without ``--strict``, ends with "No known vulnerabilities found".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE_TIMEOUT_SECONDS = 15
REQUIRE_VARIABLE = "REQUIRE_DEPENDENCY_AUDIT"

# Asks one service about one pin: None when it answered, else why not.
Probe = Callable[[str, str], str | None]


def first_pin(constraints: Path) -> tuple[str, str]:
    """The first ``name==version`` line: a release the services must know."""
    for line in constraints.read_text(encoding="utf-8").splitlines():
        requirement = line.split("#", 1)[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==", 1)
            return name.strip(), version.strip()
    raise ValueError(f"{constraints.name} pins no package (no name==version line)")


def _answer(request: urllib.request.Request) -> str | None:
    try:
        # The URLs are https constants of this module, never input.
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_SECONDS) as response:  # noqa: S310
            json.load(response)
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code} from {request.full_url}"
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        return f"{request.full_url} unreachable ({reason})"
    except ValueError:
        return f"{request.full_url} answered something other than JSON"
    return None


def probe_pypi(name: str, version: str) -> str | None:
    return _answer(urllib.request.Request(f"https://pypi.org/pypi/{name}/{version}/json"))


def probe_osv(name: str, version: str) -> str | None:
    query = {"package": {"name": name, "ecosystem": "PyPI"}, "version": version}
    return _answer(
        urllib.request.Request(
            "https://api.osv.dev/v1/query",
            data=json.dumps(query).encode(),
            headers={"Content-Type": "application/json"},
        )
    )


# pip-audit's names for the services, in the order they are tried.
SERVICES: dict[str, Probe] = {"pypi": probe_pypi, "osv": probe_osv}


def pip_audit_command(service: str, constraints: Path) -> list[str]:
    return [
        sys.executable, "-m", "pip_audit",
        "--requirement", str(constraints),
        # Every line is an exact pin: look them up as written, resolve nothing.
        "--no-deps", "--disable-pip",
        "--strict", "--vulnerability-service", service, "--progress-spinner", "off",
    ]  # fmt: skip


def run_pip_audit(command: list[str]) -> int:
    # The command is pip_audit_command's: this interpreter, fixed options and a file name.
    return subprocess.call(command)  # noqa: S603


def main(
    argv: list[str],
    services: dict[str, Probe] = SERVICES,
    run: Callable[[list[str]], int] = run_pip_audit,
) -> int:
    constraints = Path(argv[0]) if argv else ROOT / "constraints.txt"
    name, version = first_pin(constraints)
    unreachable = []
    for service, probe in services.items():
        why_not = probe(name, version)
        if why_not is None:
            print(f"dependency audit: {constraints.name} against {service}", flush=True)
            return run(pip_audit_command(service, constraints))
        unreachable.append(f"{service}: {why_not}")
    print(
        f"dependency audit: NOT AUDITED: no vulnerability service answered about "
        f"{name}=={version} ({'; '.join(unreachable)}): {constraints.name} was not checked"
    )
    return 1 if os.environ.get(REQUIRE_VARIABLE) == "1" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
