"""Waiting out a cold serverless endpoint: which errors wait, for how long, and what then."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from counting_core.uploads import cold_start


def client_error(code: str) -> ClientError:
    # The shape botocore gives a modeled error (boto3 guide, "Error handling").
    return ClientError({"Error": {"Code": code, "Message": "..."}}, "InvokeEndpoint")


class Clock:
    """Stands in for ``time``: sleeping moves the clock, and every wait is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(cold_start, "time", fake)
    return fake


def endpoint(*answers):
    """A call that raises or returns each of ``answers`` in turn."""
    pending = list(answers)

    def call():
        answer = pending.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return call


def test_a_cold_endpoint_is_asked_again_after_5_10_20_seconds(clock):
    not_ready = client_error("ModelNotReadyException")
    announced: list[float] = []

    answer = cold_start.call_until_ready(
        endpoint(not_ready, not_ready, not_ready, "counted"), on_wait=announced.append
    )

    assert answer == "counted"
    assert clock.waits == [5, 10, 20]
    assert announced == [5, 10, 20]


def test_the_waits_stop_growing_at_40_seconds_and_end_after_3_minutes(clock):
    not_ready = client_error("ModelNotReadyException")

    with pytest.raises(ClientError, match="ModelNotReadyException"):
        cold_start.call_until_ready(endpoint(*[not_ready] * 10))

    # 5 + 10 + 20 + 40 + 40 + 40 = 155 s; one more 40 s wait would start a call after 180 s.
    assert clock.waits == [5, 10, 20, 40, 40, 40]


@pytest.mark.parametrize(
    "error",
    [client_error("ValidationException"), client_error("ThrottlingException"), OSError("reset")],
    ids=["refused", "throttled (botocore's own retries)", "not an AWS error"],
)
def test_any_other_error_is_raised_at_once(clock, error):
    with pytest.raises(type(error)):
        cold_start.call_until_ready(endpoint(error, "never reached"))

    assert clock.waits == []


def test_only_the_documented_code_means_not_ready():
    assert cold_start.is_model_not_ready(client_error("ModelNotReadyException"))
    assert not cold_start.is_model_not_ready(client_error("ModelError"))
    assert not cold_start.is_model_not_ready(ValueError("ModelNotReadyException"))
