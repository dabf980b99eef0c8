"""Client-side stats in agentless mode, decoded by the fake intake (tests/harness/fakeintake.py).

The fake intake gunzips and msgpack-decodes ``/api/v0.2/stats`` itself; sketches are parsed with
the ``ddsketch`` package's protobuf classes and read with Datadog's Go formula. Nothing of our
encoder is used to read back. Covered: stats see every translated chunk, the sampled-out ones
too (they are not sent as traces); obfuscated resources; hits/errors/durations exact; quantiles
within the relative accuracy; flush at shutdown; the API key in the stats request header only.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_dd_bridge import DatadogSpanExporter
from otel_dd_bridge.ddsketch import RELATIVE_ACCURACY
from tests.harness.fakeintake import STATS_PATH, TRACES_PATH, FakeIntake
from tests.harness.sketchread import go_quantile as _go_quantile

API_KEY = "fedcba9876543210fedcba9876543210"


@pytest.fixture
def intake() -> Iterator[FakeIntake]:
    with FakeIntake() as fi:
        yield fi


def _groups(intake: FakeIntake) -> list[dict[str, Any]]:
    out = []
    for doc in intake.stats_payloads():
        assert doc["ClientComputed"] is True
        for p in doc["Stats"]:
            for b in p["Stats"]:
                out.extend(b["Stats"])
    return out


def test_agentless_stats_count_every_span_sampled_out_ones_included(intake: FakeIntake) -> None:
    exporter = DatadogSpanExporter(mode="agentless", api_key=API_KEY, intake_url=intake.url,
                                   env="ci", sampling_percentage=50, retry_timeout=3.0)
    assert exporter.stats_concentrator is not None  # on by default in agentless mode
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("stats.intake")
    rng = random.Random(3)
    now = time.time_ns()
    t0 = now - now % 10_000_000_000 - 5_000_000_000  # one bucket, whatever the clock (see agent test)
    durations: list[int] = []
    n = 200
    for i in range(n):
        d = int(rng.lognormvariate(15, 1.3))
        root = tracer.start_span("POST /pay", kind=SpanKind.SERVER, start_time=t0,
                                 attributes={"http.request.method": "POST", "http.route": "/pay",
                                             "http.response.status_code": 200})
        if i % 10 == 0:
            root.set_status(Status(StatusCode.ERROR))
        ctx = otel_trace.set_span_in_context(root)
        child = tracer.start_span("query", kind=SpanKind.CLIENT, context=ctx, start_time=t0,
                                  attributes={"db.system": "mysql",
                                              "db.statement": f"SELECT * FROM c WHERE n = {i}"})
        child.end(end_time=t0 + d // 2)
        root.end(end_time=t0 + d)
        durations.append(d)
    provider.shutdown()

    sent_spans = intake.spans()
    assert 0 < len(sent_spans) < 2 * n  # sampling dropped some traces from the trace intake...
    groups = _groups(intake)
    server = [g for g in groups if g["SpanKind"] == "server"]
    client = [g for g in groups if g["SpanKind"] == "client"]
    assert sum(g["Hits"] for g in server) == n  # ...but never from the stats
    assert sum(g["Errors"] for g in server) == n // 10
    assert sum(g["TopLevelHits"] for g in server) == n
    assert sum(g["Duration"] for g in server) == sum(durations)
    assert sum(g["Duration"] for g in client) == sum(d // 2 for d in durations)
    assert {g["Resource"] for g in client} == {"SELECT * FROM c WHERE n = ?"}  # obfuscated
    assert all("db.system:mysql" in g["PeerTags"] for g in client)

    (group,) = server  # errors share the key (same status code): ok/error sketches split them
    ok_durations = sorted(d for i, d in enumerate(durations) if i % 10 != 0)
    err_durations = sorted(d for i, d in enumerate(durations) if i % 10 == 0)
    assert abs(_go_quantile(group["ErrorSummary"], 0.5) / err_durations[9] - 1) <= RELATIVE_ACCURACY
    for q in (0.0, 0.5, 0.9, 0.99, 1.0):
        want = ok_durations[math.floor(q * (len(ok_durations) - 1))]
        assert abs(_go_quantile(group["OkSummary"], q) / want - 1) <= RELATIVE_ACCURACY

    (req, *_) = intake.of_path(STATS_PATH)
    assert req.method == "POST"
    assert req.headers["dd-api-key"] == API_KEY
    assert req.headers["content-type"] == "application/msgpack"
    assert req.headers["content-encoding"] == "gzip"
    snap = exporter.stats()
    assert snap["stats.payloads_sent"] >= 1 and snap.get("stats.payloads_dropped", 0) == 0


def test_stats_off_in_agentless_mode_on_request(intake: FakeIntake) -> None:
    exporter = DatadogSpanExporter(mode="agentless", api_key=API_KEY, intake_url=intake.url,
                                   compute_stats=False)
    provider = TracerProvider(resource=Resource.create({"service.name": "x"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("GET /", kind=SpanKind.SERVER):
        pass
    provider.shutdown()
    assert intake.of_path(TRACES_PATH) and not intake.of_path(STATS_PATH)


def test_stats_lost_to_an_intake_error_are_counted(intake: FakeIntake) -> None:
    exporter = DatadogSpanExporter(mode="agentless", api_key=API_KEY, intake_url=intake.url,
                                   retry_timeout=0.5)
    provider = TracerProvider(resource=Resource.create({"service.name": "x"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("GET /", kind=SpanKind.SERVER):
        pass
    intake.clear()
    intake.reply(400)  # the stats request at shutdown
    provider.shutdown()
    assert [r.path for r in intake.requests] == [STATS_PATH]
    snap = exporter.stats()
    assert snap["stats.payloads_dropped"] == 1 and snap["stats.groups_dropped"] == 1


def test_runtime_id_shared_by_traces_and_stats_and_new_after_fork(intake: FakeIntake) -> None:
    """One runtime id per process on TracerPayload.runtimeID and the stats' RuntimeID; a forked
    worker (exporter built before the fork, as under gunicorn) reports its own."""
    import os

    exporter = DatadogSpanExporter(mode="agentless", api_key=API_KEY, intake_url=intake.url,
                                   env="ci", retry_timeout=3.0)
    provider = TracerProvider(resource=Resource.create({"service.name": "worker"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("runtime.id")

    def one(name: str) -> None:
        tracer.start_span(name, kind=SpanKind.SERVER).end()
        assert exporter.force_flush()

    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            one("child")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    one("parent")
    exporter.shutdown()

    by_name: dict[str, str] = {}
    for p in intake.trace_payloads():
        for tp in p["tracerPayloads"]:
            for c in tp["chunks"]:
                for s in c["spans"]:
                    by_name[s["resource"]] = tp["runtimeID"]
    stats_ids = {p["RuntimeID"] for doc in intake.stats_payloads() for p in doc["Stats"]}
    assert set(by_name) == {"child", "parent"}
    assert by_name["child"] != by_name["parent"]
    assert stats_ids == {by_name["child"], by_name["parent"]}
