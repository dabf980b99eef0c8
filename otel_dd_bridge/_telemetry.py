"""Self-observability: thread-safe counters, a periodic drop summary, rate-limited logging,
and optional OpenTelemetry metrics through the user's ``MeterProvider``.

Counter names (what :meth:`DatadogSpanExporter.stats` returns):

* ``received``: spans handed to ``export()``;
* ``exported``: spans the Agent (or intake) accepted;
* ``retried``: spans in a request that was retried (once per retry);
* ``dropped.<reason>``: spans lost, one reason each (:data:`DROP_REASONS`): ``queue_full``,
  ``payload_too_large``, ``rejected`` (a final 4xx), ``retry_deadline`` (retries exhausted),
  ``shutdown`` (``shutdown()`` or the exit deadline ended the wait, or ``export()`` after
  ``shutdown()``), ``encoding_error``, ``invalid_span`` (could not be translated: zero ids,
  broken data), ``write_error`` (the file recorder could not append the batch: disk full,
  I/O error, permissions), ``internal_error`` (a bug caught by ``export()``).

Every span received ends up ``exported`` or in exactly one ``dropped.*`` counter once its
``export()`` call returned (``retried`` is an event count, not a span state).

The drop summary: when anything was dropped since the last summary, at most once per
``drop_summary_interval`` seconds (and at ``shutdown()``), one WARNING line sums up the period.
It is driven by counter updates and needs no thread (so nothing to restart after ``fork()``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from otel_dd_bridge import _lifecycle

logger = logging.getLogger(__name__)

__all__ = ["DROP_REASONS", "ExportCounters", "RateLimitedLog", "register_otel_metrics"]

DROP_REASONS: tuple[str, ...] = (
    "queue_full",
    "payload_too_large",
    "rejected",
    "retry_deadline",
    "shutdown",
    "encoding_error",
    "invalid_span",
    "write_error",
    "internal_error",
)
_BASE = ("received", "exported", "retried")


def _safe_log(lg: logging.Logger, level: int, msg: str, *args: object) -> None:
    try:
        lg.log(level, msg, *args)
    except Exception:  # noqa: BLE001 - logging at interpreter shutdown must not raise
        pass


class ExportCounters:
    """Spans received, exported, retried and dropped (by reason). Thread-safe, fork-aware.

    Args:
        summary_interval: seconds between two drop summaries (``0`` disables them).
        clock: monotonic clock (tests inject one).
    """

    def __init__(
        self, summary_interval: float = 60.0, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._c: Counter[str] = Counter()
        self._interval = summary_interval
        self._clock = clock
        self._period_start = clock()
        self._period: Counter[str] = Counter()  # counts since the last summary
        _lifecycle.on_fork_child(self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._c = Counter()
        self._period = Counter()
        self._period_start = self._clock()

    def add(self, name: str, n: int = 1) -> None:
        if not n:
            return
        self.maybe_log_summary()  # first: this update belongs to the next period
        with self._lock:
            self._c[name] += n
            self._period[name] += n

    def drop(self, reason: str, n: int) -> None:
        self.add("dropped." + reason, n)

    def snapshot(self) -> dict[str, int]:
        """Every base counter and every known drop reason (zero when nothing happened)."""
        with self._lock:
            out = {k: self._c.get(k, 0) for k in _BASE}
            out.update({f"dropped.{r}": self._c.get(f"dropped.{r}", 0) for r in DROP_REASONS})
            out.update(self._c)
        return out

    def dropped_total(self) -> int:
        with self._lock:
            return sum(v for k, v in self._c.items() if k.startswith("dropped."))

    def maybe_log_summary(self, *, force: bool = False) -> bool:
        """Log the period's summary if something was dropped and the interval elapsed.

        Returns True when a line was logged.
        """
        if self._interval <= 0 and not force:
            return False
        now = self._clock()
        with self._lock:
            elapsed = now - self._period_start
            if not force and elapsed < self._interval:
                return False
            period = self._period
            dropped = {k[8:]: v for k, v in period.items() if k.startswith("dropped.") and v}
            if not dropped:
                if not force:
                    self._period, self._period_start = Counter(), now
                return False
            self._period, self._period_start = Counter(), now
        _safe_log(
            logger, logging.WARNING,
            "otel-dd-bridge in the last %.1f s: %d spans received, %d exported, %d dropped (%s)",
            elapsed, period.get("received", 0), period.get("exported", 0), sum(dropped.values()),
            ", ".join(f"{k}={v}" for k, v in sorted(dropped.items())),
        )
        return True


class RateLimitedLog:
    """Logs a message at most once per ``interval`` seconds per key, counting the rest."""

    def __init__(
        self, logger: logging.Logger, interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        _lifecycle.on_fork_child(self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    def log(self, level: int, key: str, msg: str, *args: object) -> None:
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] += 1
                return
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            msg += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        _safe_log(self._logger, level, msg, *args)


def register_otel_metrics(counters: ExportCounters, meter_provider: Any = None) -> list[Any]:
    """Expose the counters as OpenTelemetry observable counters (opt-in).

    Instruments (meter ``otel_dd_bridge``, unit ``{span}``): ``otel_dd_bridge.spans.received``,
    ``otel_dd_bridge.spans.exported``, ``otel_dd_bridge.spans.retried`` and
    ``otel_dd_bridge.spans.dropped`` with a ``reason`` attribute. Cumulative values are read from
    :meth:`ExportCounters.snapshot` when the user's metric reader collects.

    Args:
        meter_provider: the user's ``MeterProvider``; ``None``: the global one.

    Returns:
        The instruments (kept referenced by the exporter).
    """
    from opentelemetry import metrics
    from opentelemetry.metrics import CallbackOptions, Observation

    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    from otel_dd_bridge.version import __version__

    meter = provider.get_meter("otel_dd_bridge", __version__)

    def single(name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def cb(_opts: CallbackOptions) -> Iterable[Observation]:
            return [Observation(counters.snapshot().get(name, 0))]

        return cb

    def dropped(_opts: CallbackOptions) -> Iterable[Observation]:
        snap = counters.snapshot()
        return [
            Observation(v, {"reason": k[8:]}) for k, v in snap.items() if k.startswith("dropped.")
        ]

    instruments = [
        meter.create_observable_counter(
            f"otel_dd_bridge.spans.{name}", callbacks=[single(name)], unit="{span}",
            description=f"Spans {name} by the Datadog exporter",
        )
        for name in _BASE
    ]
    instruments.append(meter.create_observable_counter(
        "otel_dd_bridge.spans.dropped", callbacks=[dropped], unit="{span}",
        description="Spans dropped by the Datadog exporter, by reason",
    ))
    return instruments
