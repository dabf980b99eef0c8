"""The benchmark's span set: Flask-like web requests recorded with the real OTel SDK.

Each request is four spans: a SERVER span with 11 attributes, a SQL CLIENT span, a Redis
CLIENT span and an HTTP CLIENT span; every 50th request (2% of server spans) fails with an
exception event and an ERROR status. Spans are finished ``ReadableSpan`` objects exactly as a
``BatchSpanProcessor`` hands them to an exporter.
"""

from __future__ import annotations

import random

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

__all__ = ["RESOURCE_ATTRS", "build_spans"]

RESOURCE_ATTRS = {
    "service.name": "bench-web",
    "deployment.environment.name": "prod",
    "service.version": "1.2.3",
}
_T0 = 1_700_000_000_000_000_000


class SeededIds(IdGenerator):
    """Reproducible trace and span ids (golden outputs, instruction counts)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._rng.getrandbits(128) or 1


def build_spans(
    n: int, *, id_generator: IdGenerator | None = None, fixed_time: bool = False
) -> list[ReadableSpan]:
    """``n`` finished spans (``n/4`` requests).

    ``fixed_time`` makes timestamps and the resource deterministic (golden-output checks).
    """
    sink = InMemorySpanExporter()
    attrs = dict(RESOURCE_ATTRS)
    if fixed_time:
        attrs["service.instance.id"] = "00000000-0000-4000-8000-000000000000"
    provider = TracerProvider(resource=Resource.create(attrs), id_generator=id_generator)
    provider.add_span_processor(SimpleSpanProcessor(sink))
    tracer = provider.get_tracer("opentelemetry.instrumentation.flask", "0.66b1")
    clock = [_T0]

    def t() -> int | None:
        if not fixed_time:
            return None
        clock[0] += 1000
        return clock[0]

    for i in range(1, n // 4 + 2):
        server = tracer.start_span("GET /users/<id>", kind=SpanKind.SERVER, start_time=t(),
                                   attributes={
            "http.request.method": "GET", "http.route": "/users/<id>", "url.path": f"/users/{i}",
            "url.scheme": "http", "server.address": "127.0.0.1", "server.port": 8000,
            "client.address": "10.0.0.1", "user_agent.original": "bench/1.0",
            "network.protocol.version": "1.1", "http.response.status_code": 200,
            "network.peer.address": "10.0.0.1",
        })
        from opentelemetry import trace

        ctx = trace.set_span_in_context(server)
        tracer.start_span("SELECT users", context=ctx, kind=SpanKind.CLIENT, start_time=t(),
                          attributes={
            "db.system": "postgresql", "db.name": "app",
            "db.statement": "SELECT id, name FROM users WHERE id = %s",
            "net.peer.name": "db", "net.peer.port": 5432,
        }).end(end_time=t())
        tracer.start_span("GET", context=ctx, kind=SpanKind.CLIENT, start_time=t(), attributes={
            "db.system": "redis", "db.statement": "GET user:1", "net.peer.name": "cache",
            "net.peer.port": 6379, "db.redis.database_index": 0,
        }).end(end_time=t())
        tracer.start_span("GET", context=ctx, kind=SpanKind.CLIENT, start_time=t(), attributes={
            "http.request.method": "GET", "url.full": "http://profile/api/1",
            "server.address": "profile", "http.response.status_code": 200,
        }).end(end_time=t())
        if i % 50 == 0:
            try:
                raise ValueError("bad user id")
            except ValueError as exc:
                server.record_exception(exc, timestamp=t())
                server.set_status(Status(StatusCode.ERROR, str(exc)))
        server.end(end_time=t())
    provider.shutdown()
    return list(sink.get_finished_spans())[:n]
