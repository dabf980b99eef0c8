"""End to end through the real OTel SDK and Datadog's real test agent (ddapm-test-agent)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_dd_bridge import DatadogSpanExporter

REPO = Path(__file__).resolve().parents[2]
HIGH = 0x5B8EFFF798038103
TRACE_ID = (HIGH << 64) | 0xD269B633813FC60C


class FixedTraceIds(IdGenerator):
    """A 128-bit trace id with non-zero upper bits, and sequential span ids."""

    def __init__(self) -> None:
        self.n = 0

    def generate_trace_id(self) -> int:
        return TRACE_ID

    def generate_span_id(self) -> int:
        self.n += 1
        return 0x1000 + self.n


def _trace_three_spans(exporter: DatadogSpanExporter) -> None:
    provider = TracerProvider(
        resource=Resource.create({"service.name": "e2e-svc", "deployment.environment.name": "test"}),
        id_generator=FixedTraceIds(),
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("e2e.tests", "1.0")
    with tracer.start_as_current_span(
        "GET /items/{id}", kind=SpanKind.SERVER,
        attributes={"http.request.method": "GET", "http.route": "/items/{id}",
                    "http.response.status_code": 200},
    ):
        with tracer.start_as_current_span(
            "SELECT", kind=SpanKind.CLIENT,
            attributes={"db.system.name": "postgresql", "db.query.text": "SELECT * FROM items"},
        ):
            time.sleep(0.001)
        with tracer.start_as_current_span("work") as span:
            span.set_status(Status(StatusCode.ERROR, "boom"))
    provider.shutdown()


def _check_trace(traces: list) -> None:
    assert len(traces) == 1, traces
    spans = {s["name"]: s for s in traces[0]}
    assert set(spans) == {"http.server.request", "postgresql.query", "Internal"}
    root, db, work = spans["http.server.request"], spans["postgresql.query"], spans["Internal"]
    low = TRACE_ID & ((1 << 64) - 1)
    assert {s["trace_id"] for s in traces[0]} == {low}
    assert root["parent_id"] == 0 and db["parent_id"] == root["span_id"] == work["parent_id"]
    assert root["service"] == "e2e-svc" and root["resource"] == "GET /items/{id}"
    assert root["type"] == "web" and db["type"] == "sql" and db["resource"] == "SELECT * FROM items"
    assert root["meta"]["env"] == "test" and root["meta"]["otel.trace_id"] == f"{TRACE_ID:032x}"
    first = traces[0][0]
    assert first["meta"]["_dd.p.tid"] == f"{HIGH:016x}"
    assert work["error"] == 1 and work["meta"]["error.msg"] == "boom"
    assert root["metrics"]["_top_level"] == 1 and db["metrics"]["_dd.measured"] == 1
    assert root["start"] <= db["start"] and db["duration"] >= 1_000_000
    assert root["start"] + root["duration"] >= db["start"] + db["duration"]


def test_sdk_to_agent_v04(agent) -> None:
    exporter = DatadogSpanExporter(agent_url=agent.url)
    _trace_three_spans(exporter)
    _check_trace(agent.wait_for_traces(1))
    assert exporter.stats()["exported"] == 3


def test_sdk_to_agent_v05(agent) -> None:
    exporter = DatadogSpanExporter(agent_url=agent.url, api_version="v0.5")
    _trace_three_spans(exporter)
    _check_trace(agent.wait_for_traces(1))
    assert exporter.api_version == "v0.5"
    assert any("/v0.5/traces" in str(r.get("url", r)) for r in agent.requests())


def test_sdk_to_agent_over_unix_socket(test_agent_uds) -> None:
    test_agent_uds.clear()
    exporter = DatadogSpanExporter(agent_url=f"unix://{test_agent_uds.uds_path}")
    _trace_three_spans(exporter)
    _check_trace(test_agent_uds.wait_for_traces(1))


def test_env_only_configuration(agent, monkeypatch) -> None:
    monkeypatch.setenv("DD_TRACE_AGENT_URL", agent.url)
    monkeypatch.setenv("DD_SERVICE", "from-env")
    monkeypatch.setenv("DD_VERSION", "9.9")
    _trace_three_spans(DatadogSpanExporter())
    [trace] = agent.wait_for_traces(1)
    assert {s["service"] for s in trace} == {"from-env"}
    assert {s["meta"]["version"] for s in trace} == {"9.9"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_opentelemetry_instrument_launcher_flask(agent) -> None:
    port = _free_port()
    bindir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "OTEL_"))}
    env.update(
        OTEL_TRACES_EXPORTER="datadog", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none",
        OTEL_SERVICE_NAME="hello-flask", DD_TRACE_AGENT_URL=agent.url, DD_ENV="launcher",
        FLASK_APP_PORT=str(port), OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_PROPAGATORS="tracecontext,datadog",
    )
    proc = subprocess.Popen(
        [str(bindir / "opentelemetry-instrument"), sys.executable,
         str(REPO / "examples" / "flask_app" / "app.py")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/hello/world", headers={
                    "x-datadog-trace-id": "1234567890123", "x-datadog-parent-id": "42",
                    "x-datadog-sampling-priority": "2", "x-datadog-origin": "synthetics",
                    "x-datadog-tags": f"_dd.p.dm=-4,_dd.p.tid={HIGH:016x}"})
                with urllib.request.urlopen(req, timeout=2) as r:
                    assert r.read() == b"hello world\n"
                break
            except OSError:
                exited = proc.poll() is not None
                if exited or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if exited and proc.stdout else ""
                    raise AssertionError(f"the Flask app did not answer: {out}") from None
                time.sleep(0.2)
        traces = agent.wait_for_traces(1, timeout=15)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    spans = [s for t in traces for s in t]
    server = [s for s in spans if s["name"] == "http.server.request"]
    assert server, spans
    s = server[0]
    assert s["service"] == "hello-flask" and s["resource"] == "GET /hello/<name>"
    assert s["type"] == "web" and s["meta"]["env"] == "launcher"
    assert s["meta"]["otel.library.name"] == "opentelemetry.instrumentation.flask"
    assert s["metrics"]["http.status_code"] == 200
    # the upstream Datadog context (x-datadog-* headers via OTEL_PROPAGATORS=...,datadog)
    assert s["trace_id"] == 1234567890123 and s["parent_id"] == 42
    assert s["metrics"]["_sampling_priority_v1"] == 2 and s["meta"]["_dd.p.dm"] == "-4"
    assert s["meta"]["_dd.origin"] == "synthetics" and s["meta"]["_dd.p.tid"] == f"{HIGH:016x}"


def test_representative_translation_through_agent(agent) -> None:
    """HTTP client, messaging, RPC, exception events, links and events arrive as translated."""
    from opentelemetry.trace import Link

    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}),
                              id_generator=FixedTraceIds())
    provider.add_span_processor(BatchSpanProcessor(DatadogSpanExporter(agent_url=agent.url)))
    tracer = provider.get_tracer("shop.tests", "2.0")
    with tracer.start_as_current_span("grpc", kind=SpanKind.SERVER,
                                      attributes={"rpc.system": "grpc", "rpc.service": "Cart",
                                                  "rpc.method": "Add"}) as rpc:
        with tracer.start_as_current_span("publish", kind=SpanKind.PRODUCER, attributes={
            "messaging.system": "kafka", "messaging.operation": "publish",
            "messaging.destination.name": "orders"},
            links=[Link(rpc.get_span_context(), {"why": "fan-out"})],
        ) as prod:
            prod.add_event("queued", {"size": 3})
        with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT, attributes={
            "http.request.method": "GET", "url.full": "http://pricing/p/1",
            "url.template": "/p/{id}", "http.response.status_code": 503}) as client:
            try:
                raise TimeoutError("pricing timed out")
            except TimeoutError as exc:
                client.record_exception(exc)
                client.set_status(Status(StatusCode.ERROR))
    provider.shutdown()
    [trace] = agent.wait_for_traces(1)
    by_name = {s["name"]: s for s in trace}
    assert set(by_name) == {"grpc.server.request", "kafka.publish", "http.client.request"}
    rpc_s, prod_s, cli = (by_name[n] for n in ("grpc.server.request", "kafka.publish",
                                                "http.client.request"))
    assert rpc_s["resource"] == "Add Cart" and rpc_s["type"] == "web"
    assert prod_s["resource"] == "publish orders" and prod_s["type"] == "custom"
    assert prod_s["metrics"]["_dd.measured"] == 1
    assert '"name":"queued"' in prod_s["meta"]["events"]
    assert f'"trace_id":"{TRACE_ID:032x}"' in prod_s["meta"]["_dd.span_links"]
    assert cli["resource"] == "GET /p/{id}" and cli["type"] == "http" and cli["error"] == 1
    assert cli["meta"]["error.type"] == "TimeoutError"
    assert cli["meta"]["error.msg"] == "pricing timed out"
    assert "Traceback" in cli["meta"]["error.stack"]
    assert cli["meta"]["_dd.span_events.has_exception"] == "true"
    assert cli["meta"]["http.url"] == "http://pricing/p/1"
    assert cli["metrics"]["http.status_code"] == 503
    assert trace[0]["meta"]["_dd.p.tid"] == f"{HIGH:016x}"
    assert all(s["meta"]["otel.trace_id"] == f"{TRACE_ID:032x}" for s in trace)


def test_sampler_honours_rates_returned_by_the_agent(agent) -> None:
    from opentelemetry.sdk.trace.sampling import Decision

    from otel_dd_bridge import DatadogSampler

    agent.set_rates({"service:ratesvc,env:prod": 0.0, "service:,env:": 1.0})
    try:
        exporter = DatadogSpanExporter(agent_url=agent.url)
        _trace_three_spans(exporter)  # any export brings the agent's rates back
        sampler = DatadogSampler(service="ratesvc", env="prod")
        assert sampler.should_sample(None, 123, "x").decision is Decision.DROP
        other = DatadogSampler(service="else", env="prod")
        r = other.should_sample(None, 123, "x")
        assert r.decision is Decision.RECORD_AND_SAMPLE and r.attributes["_dd.agent_psr"] == 1.0
    finally:
        agent.set_rates({})
