"""Client-side stats in agent mode, judged by Datadog's real test agent (ddapm-test-agent).

Real SDK spans with chosen start/end times go through ``DatadogSpanExporter(compute_stats=True)``
to the test agent's ``/v0.6/stats``. We read back (a) the test agent's own decoding
(``/test/session/stats``) and (b) the raw request bodies, decoded with ``msgpack`` and the
``ddsketch`` package's protobuf classes: hits, errors, top-level hits and durations equal what
was sent, every latency quantile is within the sketch's relative accuracy read with Datadog's
Go formula, the stats arrive at shutdown (the open bucket included), and the trace requests
claim ``Datadog-Client-Computed-Stats``.
"""

from __future__ import annotations

import base64
import math
import random
import time
from typing import Any

import msgpack
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_dd_bridge import DatadogSpanExporter
from otel_dd_bridge.ddsketch import RELATIVE_ACCURACY
from tests.harness.sketchread import go_quantile as _go_quantile
from tests.harness.testagent import TestAgent

AGENT_PEER_TAGS = ("db.name", "mongodb.db", "messaging.system")  # the test agent's /info


def _stats_requests(agent: TestAgent) -> list[dict[str, Any]]:
    return [r for r in agent.requests() if r["url"].endswith("/v0.6/stats")]


def _wait_for(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_stats_reach_the_test_agent_exactly(agent: TestAgent) -> None:
    exporter = DatadogSpanExporter(agent_url=agent.url, compute_stats=True, env="test",
                                   version="2.0")
    conc = exporter.stats_concentrator
    assert conc is not None and exporter.stats_writer is not None
    # The flusher asks /info first: the test agent's peer-tag list replaces our defaults.
    exporter.stats_writer.ensure_started()
    _wait_for(lambda: conc.peer_tag_keys == AGENT_PEER_TAGS)

    provider = TracerProvider(resource=Resource.create({"service.name": "stats-svc"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("stats.tests", "1.0")
    rng = random.Random(42)
    # Ends before the concentrator's first bucket: all re-timed into that one bucket, so the
    # quantile check below sees every span in one group whatever the wall clock.
    now = time.time_ns()
    t0 = now - now % 10_000_000_000 - 5_000_000_000
    ok_durations: list[int] = []
    err_durations: list[int] = []
    db_durations: list[int] = []
    for i in range(300):
        d = int(rng.lognormvariate(16, 1.0))  # ~9 ms median
        err = i % 25 == 0
        span = tracer.start_span(
            "GET /users/{id}", kind=SpanKind.SERVER, start_time=t0,
            attributes={"http.request.method": "GET", "http.route": "/users/{id}",
                        "http.response.status_code": 500 if err else 200},
        )
        if err:
            span.set_status(Status(StatusCode.ERROR, "boom"))
            err_durations.append(d)
        else:
            ok_durations.append(d)
        ctx = otel_trace.set_span_in_context(span)
        dbd = int(rng.lognormvariate(13, 0.5))
        child = tracer.start_span("SELECT", kind=SpanKind.CLIENT, context=ctx, start_time=t0,
                                  attributes={"db.system": "postgresql", "db.name": "users",
                                              "db.statement": f"SELECT * FROM u WHERE id = {i}"})
        child.end(end_time=t0 + dbd)
        db_durations.append(dbd)
        span.end(end_time=t0 + d)
    provider.shutdown()  # -> exporter.shutdown(): every bucket, the open one included

    # trace requests told the Agent not to compute stats again
    traces = [r for r in agent.requests() if r["url"].endswith("/traces")]
    assert traces and all(
        r["headers"].get("Datadog-Client-Computed-Stats") == "true" for r in traces)

    reqs = _stats_requests(agent)
    assert reqs, agent.log_tail()
    assert all(r["method"] == "POST" for r in reqs)
    assert all(r["headers"]["Content-Type"] == "application/msgpack" for r in reqs)
    assert all(r["headers"]["Datadog-Meta-Lang"] == "python" for r in reqs)
    groups: list[dict[str, Any]] = []
    for r in reqs:
        doc = msgpack.unpackb(base64.b64decode(r["body"]), raw=False)
        assert doc["Env"] == "test" and doc["Version"] == "2.0" and doc["Lang"] == "python"
        for bucket in doc["Stats"]:
            assert bucket["Duration"] == 10_000_000_000
            assert bucket["Start"] % 10_000_000_000 == 0
            groups.extend(bucket["Stats"])

    server = [g for g in groups if g["SpanKind"] == "server"]
    client = [g for g in groups if g["SpanKind"] == "client"]
    assert {(g["HTTPStatusCode"], g["HTTPMethod"], g["HTTPEndpoint"]) for g in server} == {
        (200, "GET", "/users/{id}"), (500, "GET", "/users/{id}")}
    assert sum(g["Hits"] for g in server) == 300
    assert sum(g["TopLevelHits"] for g in server) == 300
    assert sum(g["Errors"] for g in server) == len(err_durations) == 12
    assert sum(g["Duration"] for g in server) == sum(ok_durations) + sum(err_durations)
    assert all(g["IsTraceRoot"] == 1 and g["Service"] == "stats-svc" for g in server)
    # the client spans: one group (resource obfuscated as the Agent would), peer tags from /info
    assert {g["Resource"] for g in client} == {"SELECT * FROM u WHERE id = ?"}
    assert sum(g["Hits"] for g in client) == 300 and sum(g["TopLevelHits"] for g in client) == 0
    assert sum(g["Duration"] for g in client) == sum(db_durations)
    assert all(g["PeerTags"] == ["db.name:users"] and g["IsTraceRoot"] == 2 for g in client)

    # quantiles, read as Datadog reads them (one bucket here unless the run straddled a boundary)
    (ok_group,) = [g for g in server if g["HTTPStatusCode"] == 200 and g["Hits"] == len(ok_durations)]
    srt = sorted(ok_durations)
    for q in (0.0, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0):
        want = srt[math.floor(q * (len(srt) - 1))]
        got = _go_quantile(ok_group["OkSummary"], q)
        assert abs(got / want - 1) <= RELATIVE_ACCURACY, (q, want, got)

    # the test agent's own decoder agrees on the counts
    decoded = agent._get_json("/test/session/stats")
    agent_groups = [g for p in decoded for b in p["Stats"] for g in b["Stats"]]
    assert sum(g["Hits"] for g in agent_groups) == 600
    assert sum(g["Errors"] for g in agent_groups) == 12
    assert sum(g["TopLevelHits"] for g in agent_groups) == 300


def test_no_stats_without_the_option(agent: TestAgent) -> None:
    exporter = DatadogSpanExporter(agent_url=agent.url)
    provider = TracerProvider(resource=Resource.create({"service.name": "plain"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("GET /", kind=SpanKind.SERVER):
        pass
    provider.shutdown()
    assert exporter.stats_concentrator is None
    assert not _stats_requests(agent)
    traces = [r for r in agent.requests() if r["url"].endswith("/traces")]
    assert traces and all("Datadog-Client-Computed-Stats" not in r["headers"] for r in traces)
