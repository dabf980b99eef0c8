"""Retry classifier and policy, with an injected clock (no real sleeps)."""

from __future__ import annotations

import pytest

from otel_dd_bridge.retry import RetryPolicy, Verdict, classify, parse_retry_after, send_with_retry
from otel_dd_bridge.transport import SendResult


@pytest.mark.parametrize(
    ("status", "api", "verdict"),
    [(200, "v0.4", Verdict.SUCCESS), (202, "v0.4", Verdict.SUCCESS), (0, "v0.4", Verdict.RETRY),
     (408, "v0.4", Verdict.RETRY), (429, "v0.4", Verdict.RETRY), (500, "v0.4", Verdict.RETRY),
     (503, "v0.4", Verdict.RETRY), (413, "v0.4", Verdict.SPLIT), (404, "v0.5", Verdict.DOWNGRADE),
     (415, "v0.5", Verdict.DOWNGRADE), (404, "v0.4", Verdict.DROP), (400, "v0.4", Verdict.DROP),
     (403, "v0.4", Verdict.DROP)],
)
def test_classifier(status, api, verdict) -> None:
    assert classify(SendResult(status=status), api_version=api).verdict is verdict


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("junk") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0) == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.t

    def wait(self, d: float) -> bool:
        self.waits.append(d)
        self.t += d
        return False


def test_retries_until_success_with_jittered_backoff() -> None:
    clock = FakeClock()
    results = iter([SendResult(0, error="refused"), SendResult(503), SendResult(200)])
    out = send_with_retry(lambda: next(results), deadline=10, policy=RetryPolicy(rng=lambda: 1.0),
                          clock=clock, wait=clock.wait)
    assert out.classification.verdict is Verdict.SUCCESS and out.attempts == 3
    assert clock.waits == [0.1, 0.2]


def test_retry_after_is_honoured_and_capped() -> None:
    clock = FakeClock()
    results = iter([SendResult(429, headers={"retry-after": "2"}), SendResult(200)])
    send_with_retry(lambda: next(results), deadline=10, policy=RetryPolicy(), clock=clock,
                    wait=clock.wait)
    assert clock.waits == [2.0]
    assert RetryPolicy(max_retry_after=5).delay(0, 100.0) == 5


def test_deadline_stops_retrying() -> None:
    clock = FakeClock()
    out = send_with_retry(lambda: SendResult(500), deadline=1.0, policy=RetryPolicy(rng=lambda: 1.0),
                          clock=clock, wait=clock.wait)
    assert out.classification.verdict is Verdict.RETRY and out.gave_up
    assert clock.t <= 1.0


def test_retry_after_beyond_deadline_gives_up_at_once() -> None:
    clock = FakeClock()
    out = send_with_retry(lambda: SendResult(429, headers={"retry-after": "60"}), deadline=5,
                          policy=RetryPolicy(max_retry_after=120), clock=clock, wait=clock.wait)
    assert out.attempts == 1 and "Retry-After" in out.gave_up and clock.waits == []


def test_interrupted_wait_stops() -> None:
    out = send_with_retry(lambda: SendResult(500), deadline=100, policy=RetryPolicy(),
                          clock=lambda: 0.0, wait=lambda d: True)
    assert out.attempts == 1 and out.gave_up == "shutdown"
