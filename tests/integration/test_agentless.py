"""Agentless mode end to end: the real OTel SDK -> DatadogSpanExporter(mode="agentless") ->
the local fake intake (tests/harness/fakeintake.py, loopback only), which decodes the gzip
protobuf with its own wire reader. Faults (403, 413, 5xx, timeouts, dropped connections), the
size limit, sampled-out traces, configuration errors, and the API key never showing up."""

from __future__ import annotations

import gzip
import logging
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_dd_bridge import DatadogSpanExporter
from otel_dd_bridge.encoding.intake_protobuf import IntakeEncoder
from otel_dd_bridge.obfuscate import obfuscate_chunks
from otel_dd_bridge.proto import agent_payload_pb2 as pb
from otel_dd_bridge.translate import TranslateOptions, translate_spans
from tests.harness.fakeintake import STATS_PATH, TRACES_PATH, FakeIntake, load_jsonl
from tests.spans import make_span

API_KEY = "0123456789abcdef0123456789abcdef"  # a fake, shaped like a real key
ROOT = Path(__file__).resolve().parents[2]


def _exporter(intake: FakeIntake, **kw: object) -> DatadogSpanExporter:
    kw.setdefault("retry_timeout", 3.0)
    kw.setdefault("timeout", 1.0)
    return DatadogSpanExporter(mode="agentless", api_key=API_KEY, intake_url=intake.url, **kw)


def _spans(n: int, traces: int = 1, priority: int | None = None) -> list:
    res = Resource({"service.name": "svc", "deployment.environment.name": "ci"})
    attrs = {} if priority is None else {"sampling.priority": priority}
    out = []
    for t in range(traces):
        for i in range(n):
            out.append(make_span(f"op{i}", trace_id=0x1000 + t, span_id=0x100 * (t + 1) + i + 1,
                                 parent_id=None if i == 0 else 0x100 * (t + 1) + 1,
                                 resource=res, attributes=dict(attrs)))
    return out


@pytest.fixture
def intake():
    with FakeIntake() as fi:
        yield fi


def test_sdk_spans_arrive_at_the_intake_with_every_field(intake: FakeIntake) -> None:
    exporter = _exporter(intake, env="ci", version="2.0")
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("GET /items", kind=SpanKind.SERVER,
                                      attributes={"http.request.method": "GET",
                                                  "http.route": "/items",
                                                  "http.response.status_code": 500}) as root:
        with tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT, attributes={
                "db.system": "postgresql",
                "db.statement": "SELECT * FROM items WHERE id = 42 AND name = 'x'"}):
            pass
        root.set_status(Status(StatusCode.ERROR, "boom"))
    provider.shutdown()

    reqs = intake.of_path(TRACES_PATH)
    assert len(reqs) == 2  # SimpleSpanProcessor: one export per span
    for r in reqs:
        assert r.method == "POST"
        assert r.headers["dd-api-key"] == API_KEY
        assert r.headers["content-type"] == "application/x-protobuf"
        assert r.headers["content-encoding"] == "gzip"
        assert r.headers["x-datadog-reported-languages"] == "python"
        assert r.headers["user-agent"].startswith("otel-dd-bridge/")
        assert "datadog-meta-lang" not in r.headers  # Agent-API headers stay in agent mode
        # the generated classes parse the very bytes the independent reader decoded
        gen = pb.AgentPayload.FromString(gzip.decompress(r.body))
        assert [s.spanID for tp in gen.tracerPayloads for c in tp.chunks for s in c.spans] == [
            s["spanID"] for tp in r.agent_payload()["tracerPayloads"]
            for c in tp["chunks"] for s in c["spans"]]
    payloads = intake.trace_payloads()
    assert all(p["_unknown"] == [] and p["env"] == "ci" for p in payloads)
    tps = [tp for p in payloads for tp in p["tracerPayloads"]]
    assert {tp["env"] for tp in tps} == {"ci"} and {tp["appVersion"] for tp in tps} == {"2.0"}
    spans = {s["name"]: s for s in intake.spans()}
    server, db = spans["http.server.request"], spans["postgresql.query"]
    assert server["service"] == db["service"] == "shop"
    assert server["resource"] == "GET /items" and server["type"] == "web"
    assert server["error"] == 1 and server["parentID"] == 0
    assert db["parentID"] == server["spanID"] and db["traceID"] == server["traceID"]
    assert server["metrics"]["_top_level"] == 1.0
    assert server["meta"].get("http.status_code", server["metrics"].get("http.status_code")) in ("500", 500.0)
    # obfuscated in-process, as the Agent would have done
    assert db["resource"] == "SELECT * FROM items WHERE id = ? AND name = ?"
    assert "42" not in db["meta"].get("db.statement", "")
    assert {c["priority"] for c in intake.chunks()} == {1}
    assert exporter.stats()["exported"] == 2


def test_decoded_spans_equal_translate_then_obfuscate(intake: FakeIntake) -> None:
    spans = _spans(5, traces=3)
    exporter = _exporter(intake)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    exporter.shutdown()
    chunks = translate_spans(spans, TranslateOptions())
    obfuscate_chunks(chunks)
    want = {s.span_id: (s.service, s.name, s.resource, s.trace_id, s.parent_id, s.start,
                        s.duration, s.error, s.type, s.meta,
                        {k: float(v) for k, v in s.metrics.items()})
            for c in chunks for s in c.spans}
    got = {s["spanID"]: (s["service"], s["name"], s["resource"], s["traceID"], s["parentID"],
                         s["start"], s["duration"], s["error"], s["type"], s["meta"], s["metrics"])
           for s in intake.spans()}
    assert got == want


def test_sampled_out_traces_are_not_sent_but_counted(intake: FakeIntake, caplog) -> None:
    exporter = _exporter(intake)
    with caplog.at_level(logging.WARNING):
        kept = exporter.export(_spans(3, traces=2, priority=1))
        dropped = exporter.export(_spans(4, traces=1, priority=0))
        rejected = exporter.export(_spans(2, traces=1, priority=-1))
    assert kept is dropped is rejected is SpanExportResult.SUCCESS
    assert len(intake.spans()) == 6
    stats = exporter.stats()
    assert stats["dropped.sampled_out"] == 6 and stats["exported"] == 6
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # sampling, no error
    assert len(intake.of_path(TRACES_PATH)) == 1  # nothing at all was sent for the P0 batches


def test_403_logs_one_clear_error_without_the_key(intake: FakeIntake, caplog) -> None:
    intake.reply(403, times=3, body=b'{"errors":["Forbidden"]}', path=TRACES_PATH)
    exporter = _exporter(intake)
    with caplog.at_level(logging.DEBUG):
        results = [exporter.export(_spans(2)) for _ in range(3)]
    assert results == [SpanExportResult.FAILURE] * 3
    assert len(intake.of_path(TRACES_PATH)) == 3  # 403 is final: never retried
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "rejected the API key" in errors[0].getMessage()
    assert API_KEY not in caplog.text
    assert exporter.stats()["dropped.rejected"] == 6


def test_413_splits_and_every_span_arrives(intake: FakeIntake) -> None:
    intake.reply(413, path=TRACES_PATH)
    exporter = _exporter(intake)
    assert exporter.export(_spans(2, traces=4)) is SpanExportResult.SUCCESS
    reqs = intake.of_path(TRACES_PATH)
    assert len(reqs) == 3  # the 413'd one, then its two halves
    assert sorted(s["spanID"] for s in intake.trace_payloads()[0]["tracerPayloads"][0]["chunks"]
                  [0]["spans"]) == sorted(
        s["spanID"] for s in reqs[0].agent_payload()["tracerPayloads"][0]["chunks"][0]["spans"])
    got = [s["spanID"] for r in reqs[1:] for tp in r.agent_payload()["tracerPayloads"]
           for c in tp["chunks"] for s in c["spans"]]
    assert len(got) == 8 and len(set(got)) == 8


def test_413_on_a_single_trace_drops_it_counted(intake: FakeIntake) -> None:
    intake.reply(413, path=TRACES_PATH)
    exporter = _exporter(intake)
    assert exporter.export(_spans(3)) is SpanExportResult.FAILURE
    assert exporter.stats()["dropped.payload_too_large"] == 3


@pytest.mark.parametrize("status", [500, 503, 408])
def test_retryable_statuses_are_retried(intake: FakeIntake, status: int) -> None:
    intake.reply(status, times=2, path=TRACES_PATH)
    exporter = _exporter(intake)
    assert exporter.export(_spans(2)) is SpanExportResult.SUCCESS
    assert len(intake.of_path(TRACES_PATH)) == 3
    stats = exporter.stats()
    assert stats["retried"] == 4 and stats["exported"] == 2


def test_other_4xx_is_dropped_not_retried(intake: FakeIntake) -> None:
    intake.reply(400, body=b"bad payload", path=TRACES_PATH)
    exporter = _exporter(intake)
    assert exporter.export(_spans(2)) is SpanExportResult.FAILURE
    assert len(intake.of_path(TRACES_PATH)) == 1 and exporter.stats()["dropped.rejected"] == 2


def test_timeout_and_dropped_connection_are_retried(intake: FakeIntake) -> None:
    intake.reply(202, delay=1.0, path=TRACES_PATH)  # longer than the 0.3 s request timeout
    intake.reply(close=True, path=TRACES_PATH)
    exporter = _exporter(intake, timeout=0.3)
    t0 = time.monotonic()
    assert exporter.export(_spans(2)) is SpanExportResult.SUCCESS
    assert time.monotonic() - t0 < 3.0
    assert len(intake.of_path(TRACES_PATH)) == 3 and len(intake.spans()) == 6  # every attempt recorded


def test_intake_down_exhausts_the_deadline_counted(intake: FakeIntake) -> None:
    intake.reply(503, times=1000, path=TRACES_PATH)
    exporter = _exporter(intake, retry_timeout=0.5)
    t0 = time.monotonic()
    assert exporter.export(_spans(2)) is SpanExportResult.FAILURE
    assert time.monotonic() - t0 < 2.0
    assert exporter.stats()["dropped.retry_deadline"] == 2


def test_batches_are_split_under_the_size_limit(intake: FakeIntake) -> None:
    limit = 6000
    spans = _spans(5, traces=12)
    one = len(IntakeEncoder().encode(translate_spans(spans[:5], TranslateOptions())))
    assert one < limit < one * 12  # the batch must be split, each trace fits
    exporter = _exporter(intake, intake_max_payload_size=limit)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    reqs = intake.of_path(TRACES_PATH)
    assert len(reqs) > 1
    assert all(len(r.raw()) <= limit for r in reqs)
    assert sorted(s["spanID"] for s in intake.spans()) == sorted(s.context.span_id for s in spans)


def test_a_trace_bigger_than_the_limit_is_dropped_counted(intake: FakeIntake) -> None:
    exporter = _exporter(intake, intake_max_payload_size=1000)
    assert exporter.export(_spans(10)) is SpanExportResult.FAILURE
    assert exporter.stats()["dropped.payload_too_large"] == 10
    assert intake.of_path(TRACES_PATH) == []


def test_api_key_never_in_logs_output_or_reprs(intake: FakeIntake, caplog, capsys) -> None:
    intake.reply(500, path=TRACES_PATH)
    intake.reply(403, body=f'{{"echo":"{API_KEY}"}}'.encode(), path=TRACES_PATH)
    intake.reply(400, body=f"key {API_KEY} is bad".encode(), path=TRACES_PATH)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger().setLevel(logging.DEBUG)
        exporter = _exporter(intake, debug=True)
        for _ in range(4):
            exporter.export(_spans(2))
        exporter.shutdown()
        text = repr(exporter) + repr(exporter.config) + repr(exporter._delivery)
        text += str(exporter.stats())
    out = capsys.readouterr()
    assert len(intake.of_path(TRACES_PATH)) == 5  # the 500 was retried
    assert caplog.records  # DEBUG logging was really on
    for where in (caplog.text, out.out, out.err, text):
        assert API_KEY not in where
    for r in caplog.records:
        assert API_KEY not in r.getMessage()


def test_missing_api_key() -> None:
    with pytest.raises(ValueError, match="API key"):
        DatadogSpanExporter(mode="agentless")


def test_missing_api_key_from_the_environment_logs_an_error(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        exporter = DatadogSpanExporter(_environ={"OTEL_DD_BRIDGE_MODE": "agentless"})
    assert exporter.config.mode == "agent"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "API key" in errors[0].getMessage()
    exporter.shutdown()


@pytest.mark.parametrize("site", ["https://datadoghq.com", "datadoghq.com/x", "", "a b.com"])
def test_malformed_site_argument_raises(site: str) -> None:
    with pytest.raises(ValueError, match="site"):
        DatadogSpanExporter(mode="agentless", api_key=API_KEY, site=site or " ")


def test_malformed_site_from_the_environment_warns_and_uses_the_default(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        exporter = DatadogSpanExporter(_environ={
            "OTEL_DD_BRIDGE_MODE": "agentless", "DD_API_KEY": API_KEY, "DD_SITE": "http://x"})
    assert exporter.config.intake_url == "https://trace.agent.datadoghq.com"
    assert any("DD_SITE" in r.getMessage() for r in caplog.records)
    exporter.shutdown()


@pytest.mark.parametrize(
    ("site", "url", "warned"),
    [("datadoghq.eu", "https://trace.agent.datadoghq.eu", False),
     ("US5.datadoghq.com", "https://trace.agent.us5.datadoghq.com", False),
     ("ddog-gov.com", "https://trace.agent.ddog-gov.com", False),
     ("datadoghq.example", "https://trace.agent.datadoghq.example", True)],
)
def test_site_selects_the_intake(caplog, site: str, url: str, warned: bool) -> None:
    with caplog.at_level(logging.WARNING):
        exporter = DatadogSpanExporter(mode="agentless", api_key=API_KEY, site=site)
    assert exporter.config.intake_url == url
    assert exporter._transport.endpoint.url == url
    assert any("not a known Datadog site" in r.getMessage() for r in caplog.records) is warned
    exporter.shutdown()


def test_intake_url_override_from_the_environment() -> None:
    exporter = DatadogSpanExporter(_environ={
        "OTEL_DD_BRIDGE_MODE": "agentless", "DD_API_KEY": API_KEY,
        "OTEL_DD_BRIDGE_INTAKE_URL": "http://127.0.0.1:9/base/"})
    assert exporter.config.intake_url == "http://127.0.0.1:9/base"
    assert exporter.config.sources["intake_url"] == "OTEL_DD_BRIDGE_INTAKE_URL"
    exporter.shutdown()
    with pytest.raises(ValueError, match="intake_url"):
        DatadogSpanExporter(mode="agentless", api_key=API_KEY, intake_url="unix:///tmp/x.sock")


def test_tls_is_verified(tmp_path: Path) -> None:
    """An https intake with a certificate nobody trusts: nothing is accepted, nothing raised."""
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    seen: list[str] = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            seen.append(self.path)
            self.send_response(202)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        exporter = DatadogSpanExporter(
            mode="agentless", api_key=API_KEY, retry_timeout=0.3, timeout=1.0,
            intake_url=f"https://127.0.0.1:{server.server_address[1]}")
        assert exporter.export(_spans(1)) is SpanExportResult.FAILURE
        assert seen == [] and exporter.stats()["dropped.retry_deadline"] == 1
    finally:
        server.shutdown()


def test_standalone_fake_intake_writes_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "requests.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.harness.fakeintake", "--port", "0", "--out", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("fakeintake listening on http://127.0.0.1:")
        url = line.split()[-1]
        exporter = DatadogSpanExporter(mode="agentless", api_key=API_KEY, intake_url=url)
        assert exporter.export(_spans(3)) is SpanExportResult.SUCCESS
        exporter.shutdown()
        with urllib.request.urlopen(url + "/other", data=b"x", timeout=5) as resp:
            assert resp.status == 202
        reqs = load_jsonl(str(out))  # flushed per request: readable while the server runs
        assert [r.path for r in reqs if r.path != STATS_PATH] == [TRACES_PATH, "/other"]
        assert len([s for tp in reqs[0].agent_payload()["tracerPayloads"]
                    for c in tp["chunks"] for s in c["spans"]]) == 3
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0


def test_out_of_range_times_are_repaired_not_dropped(intake: FakeIntake) -> None:
    """A span whose end lies beyond int64 nanoseconds (a broken clock) cannot be encoded as is:
    like agent mode, the intake path repairs it (invalid duration -> 0) and sends it."""
    spans = _spans(2)
    spans[1]._end_time = 2**64 + 5  # what a clock far in the future hands the SDK
    exporter = _exporter(intake)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    got = {s["spanID"]: s for s in intake.spans()}
    assert len(got) == 2 and got[spans[1].context.span_id]["duration"] == 0
    assert exporter.stats()["dropped.encoding_error"] == 0
