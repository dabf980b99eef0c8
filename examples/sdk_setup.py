"""Minimal SDK setup: trace a few spans into a Datadog Agent.

    python examples/sdk_setup.py                      # Agent at the default location
    DD_TRACE_AGENT_URL=http://127.0.0.1:8126 python examples/sdk_setup.py
"""

from __future__ import annotations

import time

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

from otel_dd_bridge import DatadogSpanExporter


def main() -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-example"}))
    provider.add_span_processor(BatchSpanProcessor(DatadogSpanExporter()))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("examples.sdk_setup")
    with tracer.start_as_current_span(
        "GET /hello", kind=SpanKind.SERVER,
        attributes={"http.request.method": "GET", "http.route": "/hello"},
    ):
        with tracer.start_as_current_span(
            "SELECT", kind=SpanKind.CLIENT,
            attributes={"db.system.name": "sqlite", "db.query.text": "SELECT 1"},
        ):
            time.sleep(0.01)
    provider.shutdown()  # flushes the BatchSpanProcessor


if __name__ == "__main__":
    main()
