"""Reliability and security under faults (issue 9), against the real test agent where one can
provoke the fault (restart, Unix socket gone, fork, atexit) and local fault servers where it
cannot (429 storm, connection reset, redirect/proxy). Each test states its numbers: spans sent,
received by the agent, dropped by reason.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import select
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExportResult,
)

from otel_dd_bridge import DatadogSpanExporter
from tests.faultserver import FaultServer, Reply
from tests.harness.testagent import TestAgent
from tests.spans import make_span

RES = Resource({"service.name": "svc", "deployment.environment.name": "prod"})
REPO = Path(__file__).resolve().parents[2]
SECRET = "0123456789abcdef0123456789abcdef"  # looks like a DD API key


def _batch(n_traces: int, spans_per_trace: int = 1, base: int = 0) -> list:
    return [
        make_span(trace_id=(base + t + 1) << 8, span_id=i + 1, resource=RES)
        for t in range(n_traces) for i in range(spans_per_trace)
    ]


def _exp(url: str, **kw) -> DatadogSpanExporter:
    kw.setdefault("retry_timeout", 5.0)
    kw.setdefault("timeout", 1.0)
    return DatadogSpanExporter(agent_url=url, _environ={}, **kw)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _span_count(traces: list) -> int:
    return sum(len(t) for t in traces)


def _accounted(stats: dict[str, int]) -> int:
    return stats["exported"] + sum(v for k, v in stats.items() if k.startswith("dropped."))


# ------------------------------------------------------------------------------ real agent


@pytest.fixture
def own_agent():
    agent = TestAgent().start()
    yield agent
    agent.stop()


def test_agent_killed_and_restarted_mid_stream(own_agent: TestAgent) -> None:
    """50 spans before the crash arrive; 10 sent while down with a 0.5 s budget are dropped
    (retry_deadline); 10 sent while down with a 30 s budget are retried and arrive after the
    restart; 50 sent after the restart arrive. The agent (which lost its memory) ends with 60."""
    exp = _exp(own_agent.url, retry_timeout=0.5)
    for b in range(5):
        assert exp.export(_batch(10, base=b * 10)) is SpanExportResult.SUCCESS
    assert _span_count(own_agent.wait_for_traces(50)) == 50

    own_agent.kill()
    assert exp.export(_batch(10, base=100)) is SpanExportResult.FAILURE
    assert exp.stats()["dropped.retry_deadline"] == 10

    patient = _exp(own_agent.url, retry_timeout=30.0)
    result: list = []
    t = threading.Thread(target=lambda: result.append(patient.export(_batch(10, base=200))))
    t.start()
    time.sleep(0.5)
    own_agent.start(port=own_agent.port)
    t.join(30)
    assert result == [SpanExportResult.SUCCESS]
    assert patient.stats()["retried"] >= 10
    for b in range(5):
        assert exp.export(_batch(10, base=300 + b * 10)) is SpanExportResult.SUCCESS
    traces = own_agent.wait_for_traces(60)
    assert _span_count(traces) == 60
    got = {t[0]["trace_id"] for t in traces}
    assert {((200 + t + 1) << 8) for t in range(10)} <= got  # the retried ones
    s = exp.stats()
    assert (s["received"], s["exported"], s["dropped.retry_deadline"]) == (110, 100, 10)
    assert _accounted(s) == s["received"]
    exp.shutdown()
    patient.shutdown()


def test_unix_socket_disappears_mid_run() -> None:
    """10 spans arrive over the socket; the agent dies and its socket file is removed: 5 spans
    are dropped (retry_deadline), nothing raises; the agent comes back on the same path: 10
    more arrive."""
    with tempfile.TemporaryDirectory(prefix="dd-uds-") as d:
        path = os.path.join(d, "apm.socket")
        agent = TestAgent(uds_path=path).start()
        try:
            exp = _exp(f"unix://{path}", retry_timeout=0.5)
            assert exp.export(_batch(10)) is SpanExportResult.SUCCESS
            agent.kill()
            assert not os.path.exists(path)
            assert exp.export(_batch(5, base=50)) is SpanExportResult.FAILURE
            assert exp.stats()["dropped.retry_deadline"] == 5
            agent.start(port=agent.port)
            assert exp.export(_batch(10, base=100)) is SpanExportResult.SUCCESS
            assert _span_count(agent.wait_for_traces(10)) == 10
            s = exp.stats()
            assert (s["received"], s["exported"]) == (25, 20) and _accounted(s) == 25
            exp.shutdown()
        finally:
            agent.stop()


def test_oversized_trace_split_oversized_span_dropped(agent: TestAgent) -> None:
    """max_payload_size 64 KiB. 9 small traces arrive; one trace of 200 spans x 1 KiB (~230
    KiB) is sent in parts (partial flush) and all 200 arrive; one span carrying 5 x 25 KB
    attributes cannot fit alone and is dropped (payload_too_large = 1). 209 of 210 arrive."""
    exp = _exp(agent.url, max_payload_size=64 * 1024)
    big = [make_span(trace_id=7 << 40, span_id=i + 1, resource=RES, attributes={"blob": "x" * 1024})
           for i in range(200)]
    fat = make_span(trace_id=9 << 40, span_id=1, resource=RES,
                    attributes={f"b{i}": "y" * 25_000 for i in range(5)})
    assert exp.export(_batch(9) + big + [fat]) is SpanExportResult.FAILURE
    agent.wait_for_traces(10)
    time.sleep(0.3)
    traces = agent.traces()
    assert _span_count(traces) == 209
    assert sum(len(t) for t in traces if t[0]["trace_id"] == 7 << 40) == 200
    assert all(len(r["body"]) <= 64 * 1024 * 4 / 3 + 4 for r in agent.requests())  # base64
    s = exp.stats()
    assert (s["exported"], s["dropped.payload_too_large"]) == (209, 1)
    exp.shutdown()


def test_simple_span_processor_from_many_threads(agent: TestAgent) -> None:
    """16 threads x 25 spans through SimpleSpanProcessor: 400 arrive, none dropped."""
    exp = _exp(agent.url)
    provider = TracerProvider(resource=RES, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exp))
    tracer = provider.get_tracer("t")

    def work() -> None:
        for _ in range(25):
            with tracer.start_as_current_span("op"):
                pass

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert _span_count(agent.wait_for_traces(400)) == 400
    s = exp.stats()
    assert (s["received"], s["exported"], _accounted(s)) == (400, 400, 400)
    provider.shutdown()


# ------------------------------------------------------------------------------ fork


def _wait_child(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError(f"child {pid} hung (deadlock?)")


def test_prefork_workers_each_deliver_no_duplicates(agent: TestAgent) -> None:
    """gunicorn-style: exporter + BatchSpanProcessor built in the parent, 7 parent spans still
    queued, a parent thread holding the exporter's locks at fork time. 3 forked workers x 5
    spans each arrive (15), the 7 parent spans arrive once (not 4 times): 22 in all. Each
    child's counters start at zero (received == 5)."""
    exp = _exp(agent.url)
    provider = TracerProvider(resource=RES, shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exp, schedule_delay_millis=60_000))
    tracer = provider.get_tracer("t")
    for _ in range(7):
        with tracer.start_as_current_span("parent"):
            pass
    # a parent thread is "mid-export" at fork time: it holds these locks for 1 s
    held = threading.Event()

    def hold() -> None:
        with exp._cache_lock, exp.counters._lock, exp._inflight_cv:
            held.set()
            time.sleep(1.0)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    children = []
    for w in range(3):
        r, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                os.close(r)
                for _ in range(5):
                    with tracer.start_as_current_span(f"worker{w}"):
                        pass
                ok = provider.force_flush(10_000)
                os.write(wfd, json.dumps({"ok": ok, "stats": exp.stats()}).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(wfd)
        children.append((pid, r))
    reports = []
    for pid, r in children:
        assert _wait_child(pid, 20) == 0
        with os.fdopen(r) as f:
            reports.append(json.loads(f.read()))
    holder.join()
    assert all(rep["ok"] for rep in reports)
    assert [(rep["stats"]["received"], rep["stats"]["exported"]) for rep in reports] == [(5, 5)] * 3
    provider.force_flush(10_000)
    traces = agent.wait_for_traces(22)
    time.sleep(0.3)
    traces = agent.traces()
    names = sorted(t[0]["resource"] for t in traces)
    assert len(traces) == 22, names
    assert [n for n in names if n.startswith("worker")] == sorted(
        f"worker{w}" for w in range(3) for _ in range(5))
    assert exp.stats()["exported"] == 7  # the parent's own numbers
    provider.shutdown()


_MP_EXPORTER: DatadogSpanExporter | None = None


def _mp_worker(i: int) -> str:
    assert _MP_EXPORTER is not None
    res = _MP_EXPORTER.export(_batch(4, base=1000 + i * 10))
    return res.name


def test_multiprocessing_fork_pool(agent: TestAgent) -> None:
    """A fork-context Pool of 3 workers inheriting one exporter: 6 tasks x 4 spans = 24 arrive."""
    global _MP_EXPORTER
    _MP_EXPORTER = _exp(agent.url)
    assert _MP_EXPORTER.export(_batch(1, base=5000)) is SpanExportResult.SUCCESS  # warm the pool
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(3) as pool:
        results = pool.map(_mp_worker, range(6), chunksize=1)
    assert results == ["SUCCESS"] * 6
    assert _span_count(agent.wait_for_traces(25)) == 25
    _MP_EXPORTER.shutdown()
    _MP_EXPORTER = None


# ------------------------------------------------------------------------------ atexit

_ATEXIT_SCRIPT = textwrap.dedent("""
    import logging, sys, time
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from otel_dd_bridge import DatadogSpanExporter
    order = sys.argv[2]
    def make_exporter():
        return DatadogSpanExporter(agent_url=sys.argv[1], retry_timeout=30, shutdown_timeout=1,
                                   _environ={})
    if order == "exporter_first":
        exp = make_exporter()
        provider = TracerProvider(resource=Resource({"service.name": "atexit"}))
    else:
        provider = TracerProvider(resource=Resource({"service.name": "atexit"}))
        exp = make_exporter()
    provider.add_span_processor(BatchSpanProcessor(exp, schedule_delay_millis=60000))
    tracer = provider.get_tracer("t")
    for i in range(10):
        with tracer.start_as_current_span("exit-span"):
            pass
    print("started", flush=True)
""")


def _run_atexit(url: str, order: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "OTEL_"))}
    env["PYTHONPATH"] = str(REPO)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _ATEXIT_SCRIPT, url, order], env=env,
                          capture_output=True, text=True, timeout=60)
    return time.monotonic() - t0, proc


@pytest.mark.parametrize("order", ["provider_first", "exporter_first"])
def test_atexit_flush_delivers(agent: TestAgent, order: str) -> None:
    """10 spans still queued at exit are flushed by the provider's atexit: 10 arrive."""
    _, proc = _run_atexit(agent.url, order)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    traces = agent.wait_for_traces(10)
    assert sum(1 for t in traces for s in t if s["resource"] == "exit-span") == 10


@pytest.mark.parametrize("order", ["provider_first", "exporter_first"])
def test_atexit_with_agent_down_is_bounded(order: str) -> None:
    """Agent down, retry_timeout 30 s, shutdown_timeout 1 s: the process exits in < 5 s (not 30),
    without a traceback, and the drop summary names 10 spans dropped for `shutdown`."""
    elapsed, proc = _run_atexit(f"http://127.0.0.1:{_closed_port()}", order)
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 5.0, (elapsed, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "10 dropped (shutdown=10)" in proc.stderr, proc.stderr


# ------------------------------------------------------------------------------ fault servers


def test_429_storm_from_20_threads() -> None:
    """The first 30 requests get 429 (no Retry-After), then 200: 20 threads x 1 span all
    succeed within the 10 s budget; retried == 30 (one per 429), dropped == 0."""
    with FaultServer(lambda i, s: Reply(429) if i < 30 else Reply(200)) as srv:
        exp = _exp(srv.url, retry_timeout=10.0)
        results: list = []
        threads = [threading.Thread(target=lambda i=i: results.append(exp.export(
            [make_span(trace_id=i + 2, span_id=1)]))) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert results.count(SpanExportResult.SUCCESS) == 20
        s = exp.stats()
        assert (s["exported"], s["retried"], exp.counters.dropped_total()) == (20, 30, 0)
        assert len(srv.requests) == 50
        exp.shutdown()


def test_endless_429_storm_is_bounded() -> None:
    """Always 429 with Retry-After 0.05: 3 spans dropped (retry_deadline) after a 0.5 s budget,
    well before 2 s."""
    with FaultServer(lambda i, s: Reply(429, headers={"Retry-After": "0.05"})) as srv:
        exp = _exp(srv.url, retry_timeout=0.5)
        t0 = time.monotonic()
        assert exp.export(_batch(3)) is SpanExportResult.FAILURE
        assert time.monotonic() - t0 < 2.0
        assert exp.stats()["dropped.retry_deadline"] == 3 and len(srv.requests) >= 5
        exp.shutdown()


class ResetServer:
    """Raw TCP server: for the first ``resets`` requests it sends half a response, then resets
    the connection (SO_LINGER 0 -> RST); later requests get a complete 200."""

    def __init__(self, resets: int) -> None:
        self.resets = resets
        self.count = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._stop = False
        self._t = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _read_request(self, conn: socket.socket) -> bool:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            body += chunk
        return True

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            while self._read_request(conn):
                self.count += 1
                if self.count <= self.resets:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"rate")
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    return
                body = b"{}"
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" + body)

    def _serve(self) -> None:
        while not self._stop:
            r, _, _ = select.select([self._sock], [], [], 0.1)
            if r:
                conn, _ = self._sock.accept()
                threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def __enter__(self) -> ResetServer:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._t.join()
        self._sock.close()


def test_connection_reset_mid_response_is_retried() -> None:
    """3 responses cut off by a RST: the 4 spans are retried 3 times (retried == 12) and then
    exported (4); nothing dropped."""
    with ResetServer(resets=3) as srv:
        exp = _exp(srv.url)
        assert exp.export(_batch(4)) is SpanExportResult.SUCCESS
        s = exp.stats()
        assert (srv.count, s["retried"], s["exported"], exp.counters.dropped_total()) == (4, 12, 4, 0)
        exp.shutdown()


def test_dns_failure_in_isolated_netns() -> None:
    """agent_url http://agent.invalid:8126 resolved inside a network namespace with no
    interface up (no DNS query can leave the machine): 3 spans dropped (retry_deadline) after
    the 0.5 s budget, export() returns FAILURE, nothing raises."""
    script = textwrap.dedent("""
        import json
        from otel_dd_bridge import DatadogSpanExporter
        from tests.spans import make_span
        exp = DatadogSpanExporter(agent_url="http://agent.invalid:8126", retry_timeout=0.5,
                                  timeout=0.5, _environ={})
        r = exp.export([make_span(trace_id=i + 2, span_id=1) for i in range(3)])
        print(json.dumps({"result": r.name, "stats": exp.stats()}))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "OTEL_"))}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(["unshare", "--net", sys.executable, "-c", script], env=env,
                          capture_output=True, text=True, timeout=30, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["result"] == "FAILURE"
    assert out["stats"]["dropped.retry_deadline"] == 3 and out["stats"]["exported"] == 0


# ------------------------------------------------------------------------------ counters


def test_drop_summary_is_logged_and_rate_limited(caplog) -> None:
    """With drop_summary_interval=0.2: drops in two periods give two summary lines, a quiet
    period gives none, and shutdown() logs the remainder."""
    exp = _exp(f"http://127.0.0.1:{_closed_port()}", retry_timeout=0.05,
               drop_summary_interval=0.2)
    with caplog.at_level(logging.WARNING, logger="otel_dd_bridge._telemetry"):
        exp.export(_batch(2))
        time.sleep(0.25)
        exp.export(_batch(3))  # the first period (2 dropped) ends here
        time.sleep(0.25)
        exp.export(_batch(1))  # a new period: 1 dropped ... logged at shutdown
        exp.shutdown()
    lines = [r.getMessage() for r in caplog.records if r.name == "otel_dd_bridge._telemetry"]
    assert len(lines) == 3, lines
    assert "2 spans received, 0 exported, 2 dropped (retry_deadline=2)" in lines[0]
    assert "3 spans received, 0 exported, 3 dropped (retry_deadline=3)" in lines[1]
    assert "1 spans received, 0 exported, 1 dropped (retry_deadline=1)" in lines[2]


def test_otel_metrics_through_user_meter_provider(agent: TestAgent) -> None:
    """Opt-in metrics: after 3 exported and 2 dropped spans the user's reader sees
    spans.received=5, spans.exported=3, spans.dropped{reason=payload_too_large}=2."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    exp = _exp(agent.url, meter_provider=mp, max_payload_size=2048)
    exp.export(_batch(3))
    exp.export([make_span(trace_id=9 << 50, span_id=i + 1, resource=RES,
                          attributes={"b": "y" * 2000}) for i in range(2)])
    data = reader.get_metrics_data()
    points: dict[tuple[str, str], int] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    points[(m.name, str(p.attributes.get("reason", "")))] = p.value
    assert points[("otel_dd_bridge.spans.received", "")] == 5
    assert points[("otel_dd_bridge.spans.exported", "")] == 3
    assert points[("otel_dd_bridge.spans.dropped", "payload_too_large")] == 2
    assert points[("otel_dd_bridge.spans.dropped", "rejected")] == 0
    exp.shutdown()
    mp.shutdown()


# ------------------------------------------------------------------------------ security


def test_api_key_never_in_logs_exceptions_repr_or_check(caplog, capsys, monkeypatch) -> None:
    """DEBUG logs of a failing export, repr(), an invalid-argument ValueError and
    `otel-dd-bridge check` output never contain the API key; nor do requests to the Agent."""
    seen: list = []
    with FaultServer(lambda i, s: (seen.append(s), Reply(500))[1]) as srv:
        with caplog.at_level(logging.DEBUG):
            exp = DatadogSpanExporter(agent_url=srv.url, api_key=SECRET, retry_timeout=0.3,
                                      debug=True, _environ={})
            exp.export(_batch(2))
            logging.getLogger("t").debug("%r %s", exp, exp.config)
            exp.shutdown()
        text = "\n".join(r.getMessage() + str(r.exc_info) for r in caplog.records)
        assert "dropped 2 spans" in text  # the logs were captured
        assert SECRET not in text and SECRET not in repr(exp) and SECRET not in repr(exp.config)
        for s in seen:
            assert SECRET not in json.dumps(s.headers) and SECRET.encode() not in s.body
    with pytest.raises(ValueError) as ei:
        DatadogSpanExporter(agent_url="ftp://x", api_key=SECRET, _environ={})
    assert SECRET not in str(ei.value)
    with pytest.raises(ValueError) as ei:
        DatadogSpanExporter(api_key=123, _environ={})  # a malformed secret
    assert "123" not in str(ei.value) and "<redacted>" in str(ei.value)

    from otel_dd_bridge.cli import main

    monkeypatch.setenv("DD_API_KEY", SECRET)
    with FaultServer(lambda i, s: Reply(200, body=b'{"endpoints":["/v0.4/traces"]}')) as srv:
        main(["check", "--agent-url", srv.url])
    out = capsys.readouterr()
    assert "<redacted>" in out.out and SECRET not in out.out + out.err


def test_tls_verification_never_disabled() -> None:
    """No `verify=False` in the package; the client verifies certificates."""
    pkg = REPO / "otel_dd_bridge"
    offenders = [str(p) for p in pkg.rglob("*.py") if "verify=False" in p.read_text()]
    assert offenders == []
    exp = DatadogSpanExporter(agent_url="https://127.0.0.1:1", _environ={})
    ctx = exp._transport._http._pool._ssl_context
    import ssl

    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    exp.shutdown()


@pytest.mark.parametrize("url", [
    "unix://relative/apm.socket", "unix:///tmp/a\x00b", "ftp://host", "file:///etc/passwd",
    "http://", "http://host:99999", "http://host/?q=1", "javascript:alert(1)",
])
def test_invalid_urls_rejected(url: str) -> None:
    with pytest.raises(ValueError):
        DatadogSpanExporter(agent_url=url, _environ={})


def test_nothing_sent_where_not_configured(monkeypatch) -> None:
    """A proxy from HTTP_PROXY/ALL_PROXY and a redirect target both see 0 requests: the exporter
    talks only to the configured agent (a 307 is a final answer: 2 spans dropped, rejected)."""
    with FaultServer(lambda i, s: Reply(200)) as proxy, FaultServer(lambda i, s: Reply(200)) as other:
        for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "HTTPS_PROXY"):
            monkeypatch.setenv(var, proxy.url)
        with FaultServer(lambda i, s: Reply(307, headers={"Location": other.url + "/v0.4/traces"})) as srv:
            exp = _exp(srv.url)
            assert exp.export(_batch(2)) is SpanExportResult.FAILURE
            assert len(srv.requests) == 1
            assert exp.stats()["dropped.rejected"] == 2
            exp.shutdown()
        assert proxy.requests == [] and other.requests == []
