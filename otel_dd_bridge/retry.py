"""Retry: a classifier, a policy and one deadline.

* :func:`classify` maps one :class:`~otel_dd_bridge.transport.SendResult` to a
  :class:`Verdict`: delivered; retryable (408, 429, 5xx, connection errors and timeouts), with
  the server's ``Retry-After`` when given; split (413: the batch is halved and each half sent,
  never retried as is); downgrade (404/415 on v0.5: the Agent has no v0.5, resend as v0.4); drop
  (any other 4xx: resending the same bytes cannot succeed).
* :class:`RetryPolicy` draws full-jitter exponential backoff and caps ``Retry-After``.
* :func:`send_with_retry` repeats one attempt until success, a final verdict, or the deadline.
  It waits through an injected ``wait`` (a ``threading.Event.wait`` in the exporter, so that
  ``shutdown()`` interrupts a backoff at once) and reads an injected clock, so tests never sleep.
"""

from __future__ import annotations

import email.utils
import enum
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from otel_dd_bridge.transport import SendResult

__all__ = ["Classification", "RetryOutcome", "RetryPolicy", "Verdict", "classify", "send_with_retry"]


class Verdict(enum.Enum):
    SUCCESS = "success"
    RETRY = "retry"
    SPLIT = "split"
    DOWNGRADE = "downgrade"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class Classification:
    verdict: Verdict
    retry_after: float | None = None
    reason: str = ""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Parse ``Retry-After`` (delta seconds or an HTTP date) into seconds from now."""
    if not value:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        secs = when.timestamp() - (time.time() if now is None else now)
    if secs != secs:  # NaN
        return None
    return max(0.0, secs)


def classify(result: SendResult, *, api_version: str = "v0.4") -> Classification:
    """Decide what to do with the outcome of one attempt."""
    status = result.status
    if status == 0:
        return Classification(Verdict.RETRY, reason=result.error or "no response")
    if 200 <= status < 300:
        return Classification(Verdict.SUCCESS)
    if status in (404, 415) and api_version == "v0.5":
        return Classification(Verdict.DOWNGRADE, reason=f"HTTP {status} on v0.5")
    if status == 413:
        return Classification(Verdict.SPLIT, reason="HTTP 413 payload too large")
    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(result.headers.get("retry-after"))
        return Classification(Verdict.RETRY, retry_after=retry_after, reason=f"HTTP {status}")
    return Classification(Verdict.DROP, reason=f"HTTP {status}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Full-jitter exponential backoff: wait ~ U(0, min(max_delay, base_delay * 2**n)).

    ``Retry-After`` from the server replaces the drawn wait, capped at ``max_retry_after``.
    """

    base_delay: float = 0.1
    max_delay: float = 5.0
    max_retry_after: float = 30.0
    rng: Callable[[], float] = field(default=random.random, compare=False)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        cap: float = min(self.max_delay, self.base_delay * (2.0**attempt))
        return float(self.rng()) * cap


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    result: SendResult
    classification: Classification
    attempts: int
    gave_up: str = ""  # why retrying stopped while the verdict was still RETRY


def send_with_retry(
    attempt: Callable[[], SendResult],
    *,
    deadline: float,
    policy: RetryPolicy,
    api_version: str = "v0.4",
    clock: Callable[[], float] = time.monotonic,
    wait: Callable[[float], bool],
    on_retry: Callable[[Classification], None] | None = None,
) -> RetryOutcome:
    """Call ``attempt`` until success, a final verdict or ``deadline`` (a ``clock`` value).

    Args:
        attempt: one send; must not raise.
        deadline: absolute time on ``clock`` after which no new attempt starts.
        policy: the backoff policy.
        api_version: passed to :func:`classify`.
        clock: monotonic clock.
        wait: sleeps up to N seconds; returns True when interrupted (shutdown).
        on_retry: called before each backoff (for counters).
    """
    n = 0
    while True:
        result = attempt()
        n += 1
        cls = classify(result, api_version=api_version)
        if cls.verdict is not Verdict.RETRY:
            return RetryOutcome(result, cls, n)
        delay = policy.delay(n - 1, cls.retry_after)
        remaining = deadline - clock()
        if delay >= remaining:
            why = "retry deadline reached"
            if cls.retry_after is not None and cls.retry_after >= remaining:
                why = f"Retry-After {cls.retry_after:.1f}s exceeds the retry deadline"
            return RetryOutcome(result, cls, n, gave_up=why)
        if on_retry is not None:
            on_retry(cls)
        if wait(delay):
            return RetryOutcome(result, cls, n, gave_up="shutdown")
