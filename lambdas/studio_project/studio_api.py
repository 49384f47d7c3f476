"""Label Studio's REST API over HTTP, with the standard library's ``urllib`` (the function
needs no package for a few JSON calls).

Calls authenticate as ``Authorization: Token <key>``, the legacy API token the service
accepts because its organization was created with legacy tokens on (``label-studio start
--enable-legacy-api-token``; ``jwt_auth/auth.py``, ``TokenAuthenticationPhaseout``). Label
Studio answers errors as JSON with ``detail`` and, for refused input, ``validation_errors``
(``core/utils/common.py``, ``custom_exception_handler``); a call it refuses raises
``StudioRefused`` with those in one line. While nothing answers (the service starting, or
its name not yet in DNS) a call is tried again, for up to ``patience`` seconds, then raises
``StudioUnreachable``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

# One call's wait for an answer; syncing a storage of a few thousand images takes seconds.
CALL_TIMEOUT_SECONDS = 120
FIRST_WAIT_SECONDS = 2.0
LONGEST_WAIT_SECONDS = 15.0
# What an error line quotes of an answer that is not Label Studio's JSON.
_QUOTED = 200


class StudioError(Exception):
    """A call to Label Studio did not succeed; the message is one line naming the call."""


class StudioRefused(StudioError):
    """Label Studio answered the call with an error: trying again changes nothing."""


class StudioUnreachable(StudioError):
    """Nothing answered within the patience given: the service may be starting or down."""


class StudioApi:
    """Calls to one Label Studio service (``url``, e.g. ``http://label-studio.internal:8080``)."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        patience: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url = url.rstrip("/")
        self._token = token
        self._patience = patience
        self._clock = clock
        self._sleep = sleep

    def get(self, path: str, **query: object) -> Any:
        return self.call("GET", path, query=query)

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return self.call("POST", path, body=body)

    def patch(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.call("PATCH", path, body=body)

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, object] | None = None,
    ) -> Any:
        """The decoded JSON answer (None when empty), trying again while nothing answers."""
        address = self._url + path + (f"?{urlencode(query)}" if query else "")
        request = urllib.request.Request(  # noqa: S310 (the URL is the stack's http:// address)
            address,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Token {self._token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        deadline = self._clock() + self._patience
        wait = FIRST_WAIT_SECONDS
        while True:
            try:
                with urllib.request.urlopen(request, timeout=CALL_TIMEOUT_SECONDS) as answer:  # noqa: S310 (same URL)
                    text = answer.read()
                return json.loads(text) if text else None
            except urllib.error.HTTPError as error:
                raise StudioRefused(
                    f"{method} {path}: {error.code} {_problem(error.read())}"
                ) from None
            except (urllib.error.URLError, ConnectionError) as error:
                # Refused, reset or not resolved: the service is not (yet) there.
                reason = getattr(error, "reason", error)
                if self._clock() + wait > deadline:
                    raise StudioUnreachable(
                        f"{method} {path}: Label Studio at {self._url} did not answer ({reason})"
                    ) from None
            self._sleep(wait)
            wait = min(wait * 2, LONGEST_WAIT_SECONDS)


def _problem(body: bytes) -> str:
    """Label Studio's error answer in one line: its detail and what it refused, and why."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        text = " ".join(body.decode("utf-8", "replace").split())
        return text[:_QUOTED] or "(no answer body)"
    problem = str(answer.get("detail", "error"))
    refused = answer.get("validation_errors")
    if isinstance(refused, dict) and refused:
        problem += ": " + "; ".join(
            f"{field}: {' '.join(map(str, why)) if isinstance(why, list) else why}"
            for field, why in refused.items()
        )
    return " ".join(problem.split())
