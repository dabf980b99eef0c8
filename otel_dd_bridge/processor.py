"""A ``BatchSpanProcessor`` that counts the spans it drops (issue 9: nothing is lost silently).

The SDK's ``BatchSpanProcessor`` holds ended spans in a bounded queue (``max_queue_size``,
``OTEL_BSP_MAX_QUEUE_SIZE``, default 2048). While the exporter is stuck (retrying during an
Agent outage) the queue fills and the SDK discards the *oldest* queued span for each new one,
logging that only once per 20 s and never telling the exporter. :class:`DatadogBatchSpanProcessor`
is that same processor (same arguments, same env defaults, same bounds) that also counts each
such span as ``dropped.queue_full`` in the exporter's counters (:meth:`DatadogSpanExporter.stats`
and its OTel metrics) and logs it rate-limited with the running total. Spans ended after
``shutdown()``, and spans still queued when ``shutdown()`` gave up, are counted as
``dropped.shutdown``.

Detection reads the SDK's private queue (``_batch_processor._queue``, a ``deque`` whose
``maxlen`` is the queue size): a span is dropped exactly when the queue is full at the moment
the new one is enqueued. Producers are serialized by a lock so two threads cannot both see a
free slot; the export thread only removes spans, so the count can only err high, by one, when it
pops a batch between the check and the enqueue (the SDK's own "Queue full" check has the same
window). If a future SDK changes that internal, the processor still works as the SDK's one, does
not count, and says so once at construction (``tests/integration/test_processor.py`` pins it).
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from otel_dd_bridge import _lifecycle
from otel_dd_bridge._telemetry import ExportCounters, RateLimitedLog

logger = logging.getLogger(__name__)

__all__ = ["DatadogBatchSpanProcessor"]


def _sdk_queue(processor: BatchSpanProcessor) -> collections.deque[Any] | None:
    """The SDK's span queue if it still is a bounded ``deque`` of the configured size."""
    inner = getattr(processor, "_batch_processor", None)
    queue = getattr(inner, "_queue", None)
    if isinstance(queue, collections.deque) and queue.maxlen == getattr(
        inner, "_max_queue_size", None
    ):
        return queue
    return None


class DatadogBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's ``BatchSpanProcessor``, counting and logging every span it drops.

    Args (exactly the SDK's; ``None`` reads the same env variables with the same defaults):
        span_exporter: the exporter. With a :class:`~otel_dd_bridge.DatadogSpanExporter` drops
            go into its counters (``exporter.stats()["dropped.queue_full"]``); with any other
            exporter into this processor's own :attr:`counters`.
        max_queue_size: ``OTEL_BSP_MAX_QUEUE_SIZE`` (2048): spans buffered while exporting.
        schedule_delay_millis: ``OTEL_BSP_SCHEDULE_DELAY`` (5000).
        max_export_batch_size: ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` (512), <= ``max_queue_size``.
        export_timeout_millis: ``OTEL_BSP_EXPORT_TIMEOUT`` (30000; unused by the SDK).
        meter_provider: for the SDK's own processor metrics.

    Attributes:
        counters: where the drops are counted (the exporter's ``counters`` when it has them).
        counting: False when the installed SDK's queue could not be inspected (drops are then
            only the SDK's own log line, as with the plain ``BatchSpanProcessor``).
    """

    def __init__(
        self,
        span_exporter: SpanExporter,
        max_queue_size: int | None = None,
        schedule_delay_millis: float | None = None,
        max_export_batch_size: int | None = None,
        export_timeout_millis: float | None = None,
        *,
        meter_provider: Any = None,
    ) -> None:
        super().__init__(
            span_exporter, max_queue_size, schedule_delay_millis, max_export_batch_size,
            export_timeout_millis, meter_provider=meter_provider,
        )
        theirs = getattr(span_exporter, "counters", None)
        # Own counters (no periodic summary: they hold only drops) for foreign exporters.
        self.counters: ExportCounters = (
            theirs if isinstance(theirs, ExportCounters) else ExportCounters(summary_interval=0)
        )
        self._dd_queue = _sdk_queue(self)
        self.counting = self._dd_queue is not None
        self._dd_max_queue_size = self._dd_queue.maxlen if self._dd_queue is not None else max_queue_size
        self._dd_lock = threading.Lock()  # serializes producers: check + enqueue is one step
        self._dd_closed = False
        self._dd_totals: collections.Counter[str] = collections.Counter()
        self._dd_log = RateLimitedLog(logger)
        if not self.counting:
            logger.warning(
                "this opentelemetry-sdk's BatchSpanProcessor internals are unknown to "
                "otel-dd-bridge: spans dropped on a full queue will not be counted",
            )
        _lifecycle.on_fork_child(self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        self._dd_lock = threading.Lock()  # a parent thread may have held it at fork()
        self._dd_totals = collections.Counter()

    def on_end(self, span: ReadableSpan) -> None:
        """Enqueue like the SDK; count the span the SDK discards when the queue is full."""
        if not (span.context and span.context.trace_flags.sampled):
            return  # the SDK ignores unsampled spans: not a drop
        with self._dd_lock:
            queue = self._dd_queue
            if self._dd_closed:
                reason: str | None = "shutdown"
            elif queue is not None and len(queue) >= (queue.maxlen or 0):
                reason = "queue_full"  # appendleft() will push out the oldest queued span
            else:
                reason = None
            super().on_end(span)
        if reason is not None:
            self._count(reason, 1)

    def shutdown(self) -> None:
        """Shut down like the SDK; spans it left in the queue (timeout) count as ``shutdown``."""
        with self._dd_lock:
            first = not self._dd_closed
            self._dd_closed = True
        super().shutdown()  # type: ignore[no-untyped-call]
        if first and self._dd_queue is not None:
            # The SDK stops exporting once shutdown's wait ended; what is still queued is lost.
            self._count("shutdown", len(self._dd_queue))

    def _count(self, reason: str, n: int) -> None:
        if not n:
            return
        self.counters.drop(reason, n)
        with self._dd_lock:
            self._dd_totals[reason] += n
            total = self._dd_totals[reason]
        if reason == "queue_full":
            self._dd_log.log(
                logging.WARNING, reason,
                "span queue full (max_queue_size=%s, OTEL_BSP_MAX_QUEUE_SIZE): %d spans dropped "
                "so far", self._dd_max_queue_size, total,
            )
        else:
            self._dd_log.log(
                logging.WARNING, reason,
                "span processor shut down: %d spans dropped so far", total,
            )
