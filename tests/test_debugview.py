"""The debug view shows exactly the translated spans that are sent."""

from __future__ import annotations

import logging

import httpx
import msgpack
from opentelemetry.trace import SpanKind

from otel_dd_bridge import DatadogSpanExporter
from tests.spans import make_span


def test_debug_env_logs_each_sent_span(caplog) -> None:
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(200, content=b"{}")

    for var in ("OTEL_DD_BRIDGE_DEBUG", "DD_TRACE_DEBUG"):
        bodies.clear()
        caplog.clear()
        exp = DatadogSpanExporter(agent_url="http://127.0.0.1:9", _environ={var: "true"},
                                  _transport=httpx.MockTransport(handler))
        span = make_span("GET /x", kind=SpanKind.SERVER, resource={"service.name": "dbg"},
                         attributes={"http.request.method": "GET", "http.route": "/x"})
        with caplog.at_level(logging.DEBUG, logger="otel_dd_bridge.debug"):
            exp.export([span])
        [[sent]] = msgpack.unpackb(bodies[0], strict_map_key=False)
        [record] = [r for r in caplog.records if r.name == "otel_dd_bridge.debug"]
        text = record.getMessage()
        assert text.startswith(f"name {sent['name']}\n")
        for field in ("service", "resource", "type", "trace_id", "parent_id", "error"):
            assert f"\n  {field} {sent[field]}\n" in text
        assert f"\n  id {sent['span_id']}\n" in text
        for k, v in sent["meta"].items():
            assert f"\n    {k}: {v}" in text
        for k, v in sent["metrics"].items():
            assert f"\n    {k}: {v}" in text
        exp.shutdown()


def test_no_debug_output_by_default(caplog) -> None:
    exp = DatadogSpanExporter(agent_url="http://127.0.0.1:9", _environ={},
                              _transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    with caplog.at_level(logging.DEBUG, logger="otel_dd_bridge.debug"):
        exp.export([make_span()])
    assert not [r for r in caplog.records if r.name == "otel_dd_bridge.debug"]
    exp.shutdown()
