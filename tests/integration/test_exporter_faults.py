"""Failure behaviour of DatadogSpanExporter against local servers we script."""

from __future__ import annotations

import logging
import socket
import threading
import time

import msgpack
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_dd_bridge import DatadogSpanExporter
from tests.faultserver import FaultServer, Reply
from tests.spans import make_span

RES = Resource({"service.name": "svc", "deployment.environment.name": "prod"})


def _spans(n: int, traces: int = 1) -> list:
    return [make_span(trace_id=(t + 1) << 1, span_id=i + 1, resource=RES) for t in range(traces)
            for i in range(n)]


def _exporter(url: str, **kw) -> DatadogSpanExporter:
    kw.setdefault("retry_timeout", 5.0)
    kw.setdefault("timeout", 2.0)
    return DatadogSpanExporter(agent_url=url, _environ={}, **kw)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_agent_down_fails_without_raising_and_logs_once(caplog) -> None:
    exp = _exporter(f"http://127.0.0.1:{_closed_port()}", retry_timeout=0.3)
    with caplog.at_level(logging.WARNING, logger="otel_dd_bridge"):
        assert exp.export(_spans(3)) is SpanExportResult.FAILURE
        assert exp.export(_spans(2)) is SpanExportResult.FAILURE
    assert exp.stats()["dropped.retry_deadline"] == 5
    # Only this exporter's delivery log: stats writers of other tests' exporters may log too.
    warnings = [
        r for r in caplog.records
        if r.name == "otel_dd_bridge.delivery" and "dropped" in r.getMessage()
    ]
    assert len(warnings) == 1  # rate-limited
    exp.shutdown()


def test_429_with_retry_after_is_retried() -> None:
    def script(i, seen):
        return Reply(429, headers={"Retry-After": "0.2"}) if i == 0 else Reply(200)

    with FaultServer(script) as srv:
        exp = _exporter(srv.url)
        t0 = time.monotonic()
        assert exp.export(_spans(2)) is SpanExportResult.SUCCESS
        assert time.monotonic() - t0 >= 0.2
        assert len(srv.requests) == 2 and srv.requests[0].body == srv.requests[1].body
        assert exp.stats()["exported"] == 2
        exp.shutdown()


def test_413_splits_the_batch() -> None:
    def script(i, seen):
        traces = msgpack.unpackb(seen.body, strict_map_key=False)
        return Reply(413) if len(traces) > 1 else Reply(200)

    with FaultServer(script) as srv:
        exp = _exporter(srv.url)
        assert exp.export(_spans(2, traces=4)) is SpanExportResult.SUCCESS
        delivered = [msgpack.unpackb(r.body, strict_map_key=False) for r in srv.requests]
        singles = [t for t in delivered if len(t) == 1]
        assert len(singles) == 4  # every trace arrived alone
        assert exp.stats()["exported"] == 8
        exp.shutdown()


def test_413_on_single_trace_drops_it_counted() -> None:
    with FaultServer(lambda i, s: Reply(413)) as srv:
        exp = _exporter(srv.url)
        assert exp.export(_spans(3)) is SpanExportResult.FAILURE
        assert exp.stats()["dropped.payload_too_large"] == 3
        exp.shutdown()


def test_payload_limit_splits_before_sending() -> None:
    with FaultServer(lambda i, s: Reply(200)) as srv:
        exp = _exporter(srv.url, max_payload_size=1500)
        assert exp.export(_spans(1, traces=6)) is SpanExportResult.SUCCESS
        assert len(srv.requests) > 1 and all(len(r.body) <= 1500 for r in srv.requests)
        exp.shutdown()


def test_404_on_v05_falls_back_to_v04_without_loss() -> None:
    def script(i, seen):
        return Reply(404, body=b"404 page not found") if seen.path == "/v0.5/traces" else Reply(200)

    with FaultServer(script) as srv:
        exp = _exporter(srv.url, api_version="v0.5")
        assert exp.export(_spans(3)) is SpanExportResult.SUCCESS
        assert [r.path for r in srv.requests] == ["/v0.5/traces", "/v0.4/traces"]
        assert len(msgpack.unpackb(srv.requests[1].body, strict_map_key=False)[0]) == 3
        assert exp.api_version == "v0.4"
        assert exp.export(_spans(1)) is SpanExportResult.SUCCESS
        assert srv.requests[-1].path == "/v0.4/traces"
        exp.shutdown()


def test_400_is_dropped_not_retried() -> None:
    with FaultServer(lambda i, s: Reply(400, body=b"bad")) as srv:
        exp = _exporter(srv.url)
        assert exp.export(_spans(2)) is SpanExportResult.FAILURE
        assert len(srv.requests) == 1 and exp.stats()["dropped.rejected"] == 2
        exp.shutdown()


def test_slow_agent_beyond_timeout() -> None:
    with FaultServer(lambda i, s: Reply(200, delay=1.0)) as srv:
        exp = _exporter(srv.url, timeout=0.2, retry_timeout=0.5)
        t0 = time.monotonic()
        assert exp.export(_spans(1)) is SpanExportResult.FAILURE
        assert time.monotonic() - t0 < 2.0
        assert exp.stats()["dropped.retry_deadline"] == 1
        exp.shutdown()


def test_shutdown_while_retrying_returns_within_bound() -> None:
    with FaultServer(lambda i, s: Reply(503, headers={"Retry-After": "20"})) as srv:
        exp = _exporter(srv.url, retry_timeout=60, shutdown_timeout=2)
        result: list = []
        t = threading.Thread(target=lambda: result.append(exp.export(_spans(2))))
        t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        exp.shutdown()
        t.join(5)
        assert time.monotonic() - t0 < 2.5
        assert result == [SpanExportResult.FAILURE]
        assert exp.stats()["dropped.shutdown"] == 2
        exp.shutdown()  # idempotent
        assert exp.export(_spans(1)) is SpanExportResult.FAILURE


def test_headers_and_rate_by_service() -> None:
    body = b'{"rate_by_service":{"service:svc,env:prod":0.5,"service:,env:":1}}'
    with FaultServer(lambda i, s: Reply(200, body=body)) as srv:
        exp = _exporter(srv.url)
        assert exp.export(_spans(2, traces=2)) is SpanExportResult.SUCCESS
        h = srv.requests[0].headers
        assert h["content-type"] == "application/msgpack"
        assert h["x-datadog-trace-count"] == "2"
        assert h["datadog-meta-lang"] == "python"
        assert h["datadog-client-computed-top-level"] == "true"
        assert h["datadog-send-real-http-status"] == "1"
        assert h["datadog-meta-tracer-version"]
        assert exp.rate_by_service.rate("svc", "prod") == 0.5
        assert exp.rate_by_service.rate("other", "") == 1.0
        # the sampler reads what the exporter learnt (one store per process)
        from opentelemetry.sdk.trace.sampling import Decision

        from otel_dd_bridge.sampler import DatadogSampler

        sampler = DatadogSampler(service="svc", env="prod", _environ={})
        assert sampler.should_sample(None, 1237892138897, "x").decision is Decision.DROP
        assert sampler.should_sample(None, 123, "x").decision is Decision.RECORD_AND_SAMPLE
        exp.shutdown()


def test_lone_surrogates_still_produce_a_valid_payload() -> None:
    with FaultServer(lambda i, s: Reply(200)) as srv:
        exp = _exporter(srv.url)
        span = make_span(name="bad\ud800name", attributes={"k\udc00": "v\ud800"})
        assert exp.export([span]) is SpanExportResult.SUCCESS
        [[dd]] = msgpack.unpackb(srv.requests[0].body, strict_map_key=False)
        [(key, value)] = [(k, v) for k, v in dd["meta"].items() if k.startswith("k")]
        assert "\ufffd" in key and "\ufffd" in value and "\ufffd" in dd["resource"]
        exp.shutdown()


def test_many_threads_export_at_once() -> None:
    with FaultServer(lambda i, s: Reply(200)) as srv:
        exp = _exporter(srv.url)
        results: list = []
        threads = [threading.Thread(target=lambda i=i: results.append(
            exp.export([make_span(trace_id=i + 2, span_id=1)]))) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results.count(SpanExportResult.SUCCESS) == 20
        assert exp.stats()["exported"] == 20
        exp.shutdown()
