"""Cross-tracer traces: our exporter + propagator next to a service traced by ddtrace.

The ddtrace service runs from its own virtualenv (``.venvs/ddtrace``, installed by
``scripts/run.sh test``) under ``ddtrace-run``; both sides report to the same real test agent.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from otel_dd_bridge import DatadogPropagator, DatadogSampler, DatadogSpanExporter

REPO = Path(__file__).resolve().parents[2]
DDTRACE_VENV = Path(os.environ.get("OTEL_DD_BRIDGE_DDTRACE_VENV", REPO / ".venvs" / "ddtrace"))
U64 = (1 << 64) - 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.poll() is not None and proc.stdout else ""
                raise AssertionError(f"{url} did not come up: {out}") from None
            time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def ddtrace_service(agent, request) -> Iterator[str]:
    style = getattr(request, "param", "datadog")
    binary = DDTRACE_VENV / "bin" / "ddtrace-run"
    if not binary.exists():
        raise RuntimeError(f"{binary} missing: run `bash scripts/run.sh test`, which installs it")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "OTEL_"))}
    env.update(DD_TRACE_AGENT_URL=agent.url, DD_SERVICE="dd-svc", DD_ENV="interop",
               DDSVC_PORT=str(port), DD_INSTRUMENTATION_TELEMETRY_ENABLED="false",
               DD_REMOTE_CONFIGURATION_ENABLED="false", DD_TRACE_STATS_COMPUTATION_ENABLED="false",
               DD_TRACE_WRITER_INTERVAL_SECONDS="0.2", DD_TRACE_PROPAGATION_STYLE=style)
    proc = subprocess.Popen([str(binary), str(DDTRACE_VENV / "bin" / "python"),
                             str(REPO / "tests" / "integration" / "apps" / "ddtrace_service.py")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url + "/hello", proc)
        time.sleep(0.5)
        agent.clear()  # forget the readiness probe's trace
        yield url
    finally:
        _stop(proc)


def _spans_of(agent, trace_low: int, services: set[str], timeout: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        spans = [s for t in agent.traces() for s in t if s["trace_id"] == trace_low]
        if {s["service"] for s in spans} >= services or time.monotonic() > deadline:
            return spans
        time.sleep(0.2)


# Both header families: Datadog's x-datadog-* headers, and W3C trace context alone (the
# Datadog decision then travels in the tracestate `dd=` member).
STYLES = [("datadog", "datadog"), ("tracecontext", "tracecontext")]


@pytest.mark.parametrize(("ddtrace_service", "otel_propagators"), STYLES,
                         indirect=["ddtrace_service"], ids=["datadog", "tracecontext"])
def test_otel_client_calls_ddtrace_service(agent, ddtrace_service, otel_propagators) -> None:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    provider = TracerProvider(resource=Resource.create({"service.name": "otel-svc"}),
                              sampler=DatadogSampler(service="otel-svc"))
    provider.add_span_processor(SimpleSpanProcessor(DatadogSpanExporter(agent_url=agent.url)))
    tracer = provider.get_tracer("interop")
    prop = DatadogPropagator() if otel_propagators == "datadog" else TraceContextTextMapPropagator()
    with tracer.start_as_current_span("call", kind=SpanKind.CLIENT, attributes={
            "http.request.method": "GET"}) as span:
        headers: dict[str, str] = {}
        prop.inject(headers)
        with urllib.request.urlopen(urllib.request.Request(ddtrace_service + "/hello",
                                                           headers=headers), timeout=10) as r:
            assert r.status == 200
        ctx = span.get_span_context()
    provider.shutdown()
    spans = _spans_of(agent, ctx.trace_id & U64, {"otel-svc", "dd-svc"})
    ours = [s for s in spans if s["service"] == "otel-svc"]
    theirs = [s for s in spans if s["service"] == "dd-svc"]
    assert ours and theirs, spans
    server = next(s for s in theirs if s["name"] == "flask.request")
    assert server["parent_id"] == ctx.span_id  # their server span is a child of our client span
    tid = f"{ctx.trace_id >> 64:016x}"
    assert ours[0]["meta"]["_dd.p.tid"] == tid
    assert any(s["meta"].get("_dd.p.tid") == tid for s in theirs)  # 128-bit id preserved
    our_prio = ours[0]["metrics"]["_sampling_priority_v1"]
    their_prio = next(s["metrics"]["_sampling_priority_v1"] for s in theirs
                      if "_sampling_priority_v1" in s["metrics"])
    assert our_prio == their_prio == 1


@pytest.mark.parametrize(("ddtrace_service", "otel_propagators"), STYLES,
                         indirect=["ddtrace_service"], ids=["datadog", "tracecontext"])
def test_ddtrace_service_calls_otel_service(agent, ddtrace_service, otel_propagators) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "OTEL_"))}
    env.update(OTEL_TRACES_EXPORTER="datadog", OTEL_METRICS_EXPORTER="none",
               OTEL_LOGS_EXPORTER="none", OTEL_SERVICE_NAME="otel-flask",
               OTEL_PROPAGATORS=otel_propagators, OTEL_TRACES_SAMPLER="datadog",
               DD_TRACE_AGENT_URL=agent.url, FLASK_APP_PORT=str(port),
               OTEL_BSP_SCHEDULE_DELAY="100")
    bindir = Path(sys.executable).parent
    otel = subprocess.Popen([str(bindir / "opentelemetry-instrument"), sys.executable,
                             str(REPO / "examples" / "flask_app" / "app.py")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/hello/probe", otel)
        time.sleep(1.0)
        agent.clear()
        target = urllib.request.quote(f"http://127.0.0.1:{port}/hello/dd", safe="")
        with urllib.request.urlopen(f"{ddtrace_service}/call?url={target}", timeout=15) as r:
            assert r.read() == b"hello dd\n"
        deadline = time.monotonic() + 20
        while True:
            spans = [s for t in agent.traces() for s in t]
            ours = [s for s in spans if s["service"] == "otel-flask"]
            theirs = [s for s in spans if s["service"] == "dd-svc"]
            if (ours and theirs) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        _stop(otel)
    assert ours and theirs, spans
    their_root = next(s for s in theirs if s["name"] == "flask.request")
    our_server = next(s for s in ours if s["name"] == "http.server.request")
    assert our_server["trace_id"] == their_root["trace_id"]  # one trace
    their_ids = {s["span_id"] for s in theirs}
    assert our_server["parent_id"] in their_ids  # parent is the ddtrace span that injected
    their_tid = next(s["meta"]["_dd.p.tid"] for s in theirs if "_dd.p.tid" in s["meta"])
    assert our_server["meta"]["_dd.p.tid"] == their_tid
    their_prio = their_root["metrics"]["_sampling_priority_v1"]
    assert our_server["metrics"]["_sampling_priority_v1"] == their_prio
    assert our_server["meta"]["_dd.p.dm"] == their_root["meta"]["_dd.p.dm"]
