"""DatadogBatchSpanProcessor (issue 9): spans the SDK's queue drops are counted as
``dropped.queue_full``, against a local fault server that keeps the exporter retrying (429 with
Retry-After 0.05 s) until the test lets it through (an Agent outage cannot be timed otherwise)."""

from __future__ import annotations

import collections
import logging
import threading
import time

import msgpack
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_dd_bridge import DatadogBatchSpanProcessor, DatadogSpanExporter
from otel_dd_bridge import processor as processor_mod
from tests.faultserver import FaultServer, Reply, Seen

RES = Resource({"service.name": "svc"})
N, QUEUE, BATCH = 200, 50, 10


def _wait(cond, timeout: float = 3.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def test_queue_full_while_exporter_retries_is_counted(caplog) -> None:
    """Queue 50, batch 10. 10 spans start an export that gets 429 until released; 190 more
    spans end meanwhile: 50 fit, 140 are dropped (the SDK drops the oldest queued). After the
    release exactly 60 are exported (the first 10 and the last 50): 60 + 140 == 200."""
    release = threading.Event()
    accepted: list[int] = []

    def script(i: int, seen: Seen) -> Reply:
        if not release.is_set():
            return Reply(429, headers={"Retry-After": "0.05"})
        accepted.append(i)
        return Reply(200)

    caplog.set_level(logging.WARNING, logger="otel_dd_bridge.processor")
    with FaultServer(script) as srv:
        exp = DatadogSpanExporter(agent_url=srv.url, _environ={}, api_version="v0.4",
                                  retry_timeout=5.0, timeout=1.0)
        bsp = DatadogBatchSpanProcessor(exp, max_queue_size=QUEUE, max_export_batch_size=BATCH,
                                        schedule_delay_millis=60_000)
        assert bsp.counting and bsp.counters is exp.counters
        provider = TracerProvider(resource=RES)
        provider.add_span_processor(bsp)
        tracer = provider.get_tracer("t")
        t0 = time.monotonic()
        for i in range(BATCH):
            tracer.start_span("op", attributes={"seq": str(i)}).end()
        _wait(lambda: len(srv.requests) >= 1)  # the worker holds batch 1, retrying
        for i in range(BATCH, N):
            tracer.start_span("op", attributes={"seq": str(i)}).end()
        s = exp.stats()  # batch 1 is in export(): received, not yet exported
        assert (s["received"], s["exported"], s["dropped.queue_full"]) == (BATCH, 0, N - BATCH - QUEUE)
        release.set()
        assert bsp.force_flush()
        provider.shutdown()
        assert time.monotonic() - t0 < 5.0

        s = exp.stats()
        assert (s["received"], s["exported"], s["dropped.queue_full"]) == (60, 60, 140)
        assert s["received"] + s["dropped.queue_full"] == N
        assert exp.counters.dropped_total() == 140 and s["retried"] >= 10
        bodies = [msgpack.unpackb(srv.requests[i].body, strict_map_key=False) for i in accepted]
        seqs = sorted(int(sp["meta"]["seq"]) for traces in bodies for t in traces for sp in t)
        assert seqs == list(range(BATCH)) + list(range(N - QUEUE, N))
    records = [r for r in caplog.records if r.name == "otel_dd_bridge.processor"]
    assert len(records) == 1  # rate limited: one line, with the count and the bound
    assert "max_queue_size=50" in records[0].getMessage()
    assert "1 spans dropped so far" in records[0].getMessage()


def test_sdk_internals_are_as_relied_on() -> None:
    """Pins the SDK behaviour the count relies on: the queue is a deque bounded by
    max_queue_size, and a full queue pushes out its oldest span (the right end)."""
    bsp = BatchSpanProcessor(InMemorySpanExporter(), max_queue_size=3, max_export_batch_size=3)
    try:
        q = processor_mod._sdk_queue(bsp)
        assert isinstance(q, collections.deque) and q.maxlen == 3
        q.extendleft(["a", "b", "c"])  # the worker is asleep (5 s delay, batch not reached)
        q.appendleft("d")
        assert list(q) == ["d", "c", "b"]  # "a", the oldest, is gone
        q.clear()
    finally:
        bsp.shutdown()


def test_unknown_sdk_internals_fall_back_to_plain_processor(monkeypatch, caplog) -> None:
    monkeypatch.setattr(processor_mod, "_sdk_queue", lambda p: None)
    mem = InMemorySpanExporter()
    with caplog.at_level(logging.WARNING, logger="otel_dd_bridge.processor"):
        bsp = DatadogBatchSpanProcessor(mem, max_queue_size=2, max_export_batch_size=2)
    assert not bsp.counting and "will not be counted" in caplog.text
    provider = TracerProvider(resource=RES)
    provider.add_span_processor(bsp)
    provider.get_tracer("t").start_span("op").end()
    provider.shutdown()
    assert len(mem.get_finished_spans()) == 1


def test_env_defaults_are_the_sdks(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "7")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "5")
    bsp = DatadogBatchSpanProcessor(InMemorySpanExporter())
    try:
        q = processor_mod._sdk_queue(bsp)
        assert q is not None and q.maxlen == 7
        assert bsp._batch_processor._max_export_batch_size == 5
    finally:
        bsp.shutdown()
    with pytest.raises(ValueError):
        DatadogBatchSpanProcessor(InMemorySpanExporter(), max_queue_size=0)


def test_foreign_exporter_and_spans_after_shutdown_counted() -> None:
    """Any exporter: drops go to the processor's own counters; a span ended after shutdown()
    counts as dropped.shutdown; unsampled spans are not drops."""
    mem = InMemorySpanExporter()
    bsp = DatadogBatchSpanProcessor(mem, max_queue_size=4, max_export_batch_size=4,
                                    schedule_delay_millis=60_000)
    provider = TracerProvider(resource=RES)
    provider.add_span_processor(bsp)
    tracer = provider.get_tracer("t")
    span = tracer.start_span("late")
    provider.shutdown()
    span.end()  # the provider still calls on_end; the SDK ignores it
    bsp.on_end(span)  # (again, directly)
    snap = bsp.counters.snapshot()
    assert snap["dropped.shutdown"] == 2 and snap["dropped.queue_full"] == 0
    assert mem.get_finished_spans() == ()


def test_spans_left_queued_when_shutdown_gives_up_are_counted(monkeypatch) -> None:
    """The exporter retries (429 forever) while shutdown()'s wait (shortened to 0.1 s here; the
    SDK's is 30 s) runs out: the 10 in-flight spans are dropped by the exporter (shutdown), the
    20 still queued by the processor (shutdown): 10 + 20 + 0 exported == 30 ended."""
    with FaultServer(lambda i, s: Reply(429, headers={"Retry-After": "0.05"})) as srv:
        exp = DatadogSpanExporter(agent_url=srv.url, _environ={}, retry_timeout=5.0, timeout=1.0)
        bsp = DatadogBatchSpanProcessor(exp, max_queue_size=QUEUE, max_export_batch_size=BATCH,
                                        schedule_delay_millis=60_000)
        inner = bsp._batch_processor
        sdk_shutdown = inner.shutdown
        monkeypatch.setattr(inner, "shutdown", lambda: sdk_shutdown(timeout_millis=100))
        provider = TracerProvider(resource=RES)
        provider.add_span_processor(bsp)
        tracer = provider.get_tracer("t")
        for _ in range(BATCH):
            tracer.start_span("op").end()
        _wait(lambda: len(srv.requests) >= 1)
        for _ in range(20):
            tracer.start_span("op").end()
        t0 = time.monotonic()
        provider.shutdown()
        assert time.monotonic() - t0 < 2.0
        s = exp.stats()
        assert (s["received"], s["exported"], s["dropped.shutdown"]) == (BATCH, 0, 30)
        assert s["dropped.queue_full"] == 0 and exp.counters.dropped_total() == 30
