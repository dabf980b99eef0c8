"""The ``otel-dd-bridge`` command: ``check``, ``send``, ``view``, ``demo``.

* ``check`` prints the resolved configuration with the source of each value and probes the
  destination.
* ``send FILE|-`` submits spans written in the span file format (:mod:`.spanfile`: JSON, JSON
  Lines, YAML) or a recording of :class:`~otel_dd_bridge.file_exporter.DatadogFileExporter`.
* ``view FILE|-`` draws the traces of such a file as a waterfall (:mod:`.waterfall`).
* ``demo`` starts a local Datadog test agent (``ddapm-test-agent``), traces a small web request
  with the OpenTelemetry SDK and this exporter, reads back what the agent received and draws it.
  No Datadog account needed. ``--web-ui`` also starts the agent's web UI on 127.0.0.1 and
  keeps the agent running until Ctrl-C.

Exit codes (all subcommands): 0 success; 1 the destination did not take the traces (or
``check``: traces would not be delivered; ``view``: no such trace); 2 usage or configuration
error, unreadable file; 3 malformed input, nothing sent; 4 ``send --partial``: malformed
records were skipped, every other span was delivered.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from otel_dd_bridge.version import __version__

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MALFORMED, EXIT_PARTIAL = 0, 1, 2, 3, 4
_EXIT_CODES = """exit codes: 0 success, 1 not delivered / not found, 2 usage or configuration error,
3 malformed input (nothing sent), 4 --partial: malformed records skipped, the rest delivered"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _find_test_agent(explicit: str | None) -> str:
    candidates = [explicit, os.environ.get("OTEL_DD_BRIDGE_TEST_AGENT")]
    candidates.append(shutil.which("ddapm-test-agent"))
    here = Path(__file__).resolve().parent.parent
    candidates.append(str(here / ".venvs" / "testagent" / "bin" / "ddapm-test-agent"))
    for c in candidates:
        if c and os.path.exists(c):
            return c
    raise SystemExit(
        "otel-dd-bridge demo: ddapm-test-agent not found; install it in its own virtualenv "
        "(pip install ddapm-test-agent) and pass --test-agent PATH"
    )


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback only
        return json.loads(resp.read())


def _agent_has_web_ui(binary: str) -> bool:
    """Whether this ddapm-test-agent offers ``--web-ui-port`` (1.69.1 does; older ones may not).

    Asked of the binary's own ``--help`` rather than assumed, so that demo never advertises a UI
    that a user-supplied older agent does not have.
    """
    try:
        out = subprocess.run([binary, "--help"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return b"--web-ui-port" in out.stdout


def _start_agent(
    binary: str, web_ui_port: int | None = None
) -> tuple[subprocess.Popen[bytes], str, Path]:
    """Start the test agent on 127.0.0.1; with ``web_ui_port`` also its web UI (same host).

    ``WEB_UI_PORT`` is removed from the agent's environment: the agent reads it as a default
    for ``--web-ui-port`` (and crashes on an empty value), and demo decides that alone.
    """
    port = _free_port()
    drop = ("DD_TRACE_AGENT_URL", "DD_AGENT_URL", "WEB_UI_PORT")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    logdir = Path(tempfile.mkdtemp(prefix="otel-dd-bridge-demo-"))
    log = open(logdir / "test-agent.log", "wb")  # noqa: SIM115 - owned by the process
    cmd = [binary, "--host", "127.0.0.1", "--port", str(port),
           "--otlp-http-port", str(_free_port()), "--otlp-grpc-port", str(_free_port())]
    if web_ui_port is not None:
        cmd += ["--web-ui-port", str(web_ui_port)]
    # A session of its own: Ctrl-C reaches demo only, which then stops the agent (in finally).
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"test agent exited early; see {logdir / 'test-agent.log'}")
        try:
            _get_json(url + "/info")
            return proc, url, logdir
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("test agent did not start within 30 s")


def _make_traffic(agent_url: str) -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode

    from otel_dd_bridge import DatadogSpanExporter

    provider = TracerProvider(
        resource=Resource.create({"service.name": "matchmaker", "deployment.environment.name": "demo"})
    )
    provider.add_span_processor(SimpleSpanProcessor(DatadogSpanExporter(agent_url=agent_url)))
    tracer = provider.get_tracer("otel-dd-bridge.demo", __version__)
    with tracer.start_as_current_span(
        "GET /pair/beer", kind=SpanKind.SERVER,
        attributes={"http.request.method": "GET", "http.route": "/pair/beer",
                    "url.path": "/pair/beer", "http.response.status_code": 200},
    ):
        with tracer.start_as_current_span(
            "SELECT beers", kind=SpanKind.CLIENT,
            attributes={"db.system.name": "postgresql",
                        "db.query.text": "SELECT name, style FROM beers WHERE name = ?",
                        "server.address": "127.0.0.1"},
        ):
            time.sleep(0.002)
        with tracer.start_as_current_span(
            "GET", kind=SpanKind.CLIENT,
            attributes={"db.system": "redis", "db.statement": "GET donut:glazed"},
        ):
            time.sleep(0.001)
        with tracer.start_as_current_span(
            "GET", kind=SpanKind.CLIENT,
            attributes={"http.request.method": "GET", "url.full": "http://taster/taste",
                        "url.template": "/taste", "http.response.status_code": 500},
        ) as span:
            try:
                raise RuntimeError("taster is down")
            except RuntimeError as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
    provider.shutdown()


def _render_tree(
    by_parent: dict[int, list[dict[str, Any]]], parent: int, depth: int, root_start: int,
    lines: list[str],
) -> None:
    for s in sorted(by_parent.get(parent, []), key=lambda x: x["start"]):
        err = "  ERROR " + s.get("meta", {}).get("error.msg", "") if s.get("error") else ""
        off = (s["start"] - root_start) / 1e6
        lines.append(
            f"{'  ' * depth}- {s['service']} | {s['name']} | {s['resource']} | "
            f"type={s.get('type', '')} +{off:.1f}ms {s['duration'] / 1e6:.1f}ms{err}"
        )
        _render_tree(by_parent, s["span_id"], depth + 1, root_start, lines)


def _render(traces: list[list[dict[str, Any]]]) -> str:
    lines: list[str] = []
    for trace in traces:
        by_parent: dict[int, list[dict[str, Any]]] = {}
        ids = {s["span_id"] for s in trace}
        for s in trace:
            parent = s.get("parent_id") or 0
            by_parent.setdefault(parent if parent in ids else 0, []).append(s)
        lines.append(f"trace {trace[0]['trace_id']}")
        _render_tree(by_parent, 0, 1, min(s["start"] for s in trace), lines)
    return "\n".join(lines)


def _wait_for_web_ui(url: str, proc: subprocess.Popen[bytes]) -> bool:
    """True once the web UI answers HTTP 200 at ``url`` (it starts with the APM server)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback only
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def _demo(args: argparse.Namespace) -> int:
    binary = _find_test_agent(args.test_agent)
    want_ui = args.web_ui or args.web_ui_port is not None
    has_ui = _agent_has_web_ui(binary)
    if want_ui and not has_ui:
        print(f"otel-dd-bridge demo: {binary} has no web UI (no --web-ui-port); "
              "upgrade ddapm-test-agent", file=sys.stderr)
        return EXIT_USAGE
    ui_port = (args.web_ui_port or _free_port()) if want_ui else None
    proc, url, logdir = _start_agent(binary, ui_port)
    try:
        ui_url = f"http://127.0.0.1:{ui_port}/" if ui_port is not None else None
        if ui_url is not None and not _wait_for_web_ui(ui_url, proc):
            print(f"otel-dd-bridge demo: the test agent's web UI did not answer at {ui_url}",
                  file=sys.stderr)
            return EXIT_FAILED
        _make_traffic(url)
        traces: list[list[dict[str, Any]]] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            traces = _get_json(url + "/test/session/traces")
            if traces:
                break
            time.sleep(0.2)
        if not traces:
            print("the test agent received no trace", file=sys.stderr)
            return 1
        from otel_dd_bridge.waterfall import render_waterfall

        print(f"The Datadog test agent at {url} received:")
        print()
        color = sys.stdout.isatty() and os.environ.get("NO_COLOR") is None
        sys.stdout.write(render_waterfall(_dd_spans_of_agent_traces(traces), color=color))
        print()
        print("Spans (service | operation | resource | type, offset, duration):")
        print(_render(traces))
        if args.json:
            print(json.dumps(traces, indent=2, sort_keys=True))
        print()
        if ui_url is not None:
            print(f"Test agent web UI: {ui_url}  (requests and traces it received)")
        elif has_ui:
            print("The test agent has a web UI: run `otel-dd-bridge demo --web-ui` to open it.")
        if ui_url is not None or args.keep:
            return _keep_running(proc, url)
        return 0
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(logdir, ignore_errors=True)


def _keep_running(proc: subprocess.Popen[bytes], url: str) -> int:
    """Keep the test agent up until Ctrl-C or SIGTERM (0), or until it dies by itself (1).

    SIGINT may be ignored when demo was started in the background by a non-interactive shell,
    so SIGTERM (``kill``) is honoured too; either way the caller's ``finally`` stops the agent.
    """
    import signal

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)
    print(f"The test agent keeps running at {url}; press Ctrl-C to stop it.", flush=True)
    try:
        while proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"otel-dd-bridge demo: the test agent exited (status {proc.returncode})",
          file=sys.stderr)
    return EXIT_FAILED


def _accelerator_line() -> str:
    """Which hot-path modules run compiled (README: Performance, the compiled accelerator)."""
    from otel_dd_bridge._accel import ENV_NO_EXTENSIONS, compiled_status, extensions_disabled

    status = compiled_status()
    if extensions_disabled():
        return f"accelerator: off ({ENV_NO_EXTENSIONS} is set): pure Python"
    on = [k for k, v in status.items() if v]
    off = [k for k, v in status.items() if not v]
    if not off:
        return f"accelerator: compiled ({', '.join(on)})"
    return (f"accelerator: {', '.join(off)} pure Python (not built: no C compiler at install?)"
            + (f"; compiled: {', '.join(on)}" if on else ""))


def _check(args: argparse.Namespace) -> int:
    """Print the resolved configuration with sources, then probe the Agent's /info."""
    from otel_dd_bridge.config import SETTINGS, resolve_config
    from otel_dd_bridge.transport import HttpTransport, agent_headers

    try:
        cfg = resolve_config(agent_url=args.agent_url, mode=args.mode)
    except ValueError as exc:
        print(f"otel-dd-bridge check: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print("configuration (value  <- source):")
    for setting in SETTINGS:
        if setting.name in ("agent_host", "agent_port"):
            continue
        if setting.name == "agent_url":
            value: Any = cfg.agent.url
        else:
            value = getattr(cfg, setting.name)
        if setting.secret and value:
            value = "<redacted>"
        if isinstance(value, (dict, tuple)) or hasattr(value, "items"):
            value = dict(value) if hasattr(value, "items") else list(value)
        print(f"  {setting.name:28} {value!s:40} <- {cfg.sources.get(setting.name, 'default')}")
    print(_accelerator_line())
    if cfg.mode == "agentless":
        return _probe_intake(cfg)
    if cfg.agent.uds_path and not os.path.exists(cfg.agent.uds_path):
        print(f"otel-dd-bridge check: Unix socket {cfg.agent.uds_path} does not exist",
              file=sys.stderr)
        return 1
    transport = HttpTransport(cfg.agent, timeout=cfg.timeout, headers=agent_headers())
    try:
        result = transport.send("GET", "/info", None, {})
    finally:
        transport.close()
    if result.status == 0:
        print(f"otel-dd-bridge check: Agent unreachable at {cfg.agent.url}: {result.error}",
              file=sys.stderr)
        return 1
    if result.status == 404:
        print(f"Agent at {cfg.agent.url} answers but has no /info (very old Agent): v0.4 only")
        return 0 if cfg.api_version == "v0.4" else 1
    if not result.ok:
        print(f"otel-dd-bridge check: Agent /info answered HTTP {result.status}", file=sys.stderr)
        return 1
    try:
        info = json.loads(result.body)
    except ValueError:
        print("otel-dd-bridge check: Agent /info is not JSON", file=sys.stderr)
        return 1
    endpoints = info.get("endpoints") or []
    has_v05 = "/v0.5/traces" in endpoints
    stats = "/v0.6/stats" in endpoints and bool(info.get("client_drop_p0s"))
    print(f"Agent {info.get('version', '?')} at {cfg.agent.url}")
    print(f"  v0.4 traces: {'yes' if '/v0.4/traces' in endpoints else 'no'}   "
          f"v0.5 traces: {'yes' if has_v05 else 'no'}   client stats: {'yes' if stats else 'no'}")
    if "/v0.4/traces" not in endpoints:
        print("otel-dd-bridge check: the Agent does not list /v0.4/traces", file=sys.stderr)
        return 1
    if cfg.api_version == "v0.5" and not has_v05:
        print("note: v0.5 is configured but not offered; the exporter will fall back to v0.4")
    print("OK: traces would be delivered")
    return 0


# --------------------------------------------------------------------------- send / view


def _read_records(
    paths: Sequence[str], fmt: str, warnings: list[str]
) -> tuple[list[Any], list[Any]]:
    """Parse every input; returns (records, errors). Unreadable files raise OSError."""
    from otel_dd_bridge.spanfile import SpanFileError, parse_text

    records: list[Any] = []
    errors: list[Any] = []
    for path in paths:
        if path == "-":
            text, source = sys.stdin.read(), "-"
        else:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                text, source = f.read(), path
        try:
            records.extend(parse_text(text, source, fmt, warnings))
        except SpanFileError as exc:
            errors.append(exc)
    return records, errors


def _dd_spans_of_agent_traces(traces: list[list[dict[str, Any]]]) -> list[list[Any]]:
    """The test agent's JSON traces as DDSpans (for the waterfall)."""
    from otel_dd_bridge.spanfile import Record, record_to_dd_span

    keep = ("trace_id", "span_id", "parent_id", "service", "name", "resource", "type",
            "start", "duration", "error", "meta", "metrics")
    out: list[list[Any]] = []
    for trace in traces:
        spans = []
        for s in trace:
            data = {k: s[k] for k in keep if k in s and s[k] is not None}
            data.setdefault("meta", {})
            span, _ = record_to_dd_span(
                Record(data, "agent", 0), trace_key=None, trace_id128=0, local_ids={},
                parent_key=None, default_service=None, now_ns=0,
            )
            spans.append(span)
        out.append(spans)
    return out


class _Progress:
    """A progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done = total, 0
        self.enabled = enabled and total > 0 and sys.stderr.isatty()

    def advance(self, n: int) -> None:
        self.done += n
        if self.enabled:
            width = 30
            filled = self.done * width // self.total
            sys.stderr.write(f"\rsending [{'#' * filled}{'.' * (width - filled)}] "
                             f"{self.done}/{self.total} spans")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _make_delivery(cfg: Any, counters: Any, stop: Any) -> tuple[Any, Any, str]:
    """(delivery, transport, destination text) for the configured mode."""
    from otel_dd_bridge.delivery import AgentDelivery
    from otel_dd_bridge.sampling import RateByService
    from otel_dd_bridge.transport import HttpTransport, agent_headers

    if cfg.mode == "agentless":
        return _make_intake_delivery(cfg, counters, stop)
    transport = HttpTransport(cfg.agent, timeout=cfg.timeout)
    delivery = AgentDelivery(
        transport, api_version=cfg.api_version, max_payload_size=cfg.max_payload_size,
        retry_timeout=cfg.retry_timeout, counters=counters, rates=RateByService(),
        base_headers=agent_headers(), stop=stop,
    )
    return delivery, transport, f"the Agent at {cfg.agent.url}"


def _make_intake_delivery(cfg: Any, counters: Any, stop: Any) -> tuple[Any, Any, str]:
    from otel_dd_bridge.intake import make_intake_delivery

    transport, delivery = make_intake_delivery(cfg, counters=counters, stop=stop)
    return delivery, transport, f"the Datadog intake at {cfg.intake_url}"


def _probe_intake(cfg: Any) -> int:
    """Agentless ``check``: POST one small probe trace, one attempt, and explain the answer."""
    import gzip

    from otel_dd_bridge.config import parse_agent_url
    from otel_dd_bridge.encoding.intake_protobuf import IntakeEncoder
    from otel_dd_bridge.intake import intake_headers
    from otel_dd_bridge.spanfile import build_chunks, parse_text
    from otel_dd_bridge.transport import HttpTransport

    if not cfg.api_key:
        print("otel-dd-bridge check: agentless mode needs an API key (DD_API_KEY)",
              file=sys.stderr)
        return EXIT_FAILED
    probe = json.dumps({"name": "otel_dd_bridge.check", "service": cfg.service
                        or "otel-dd-bridge-check", "resource": "probe", "duration": 0.001})
    chunks, _ = build_chunks(parse_text(probe, "probe"), env=cfg.env, version=cfg.version)
    encoder = IntakeEncoder(env=cfg.env)
    body = gzip.compress(encoder.encode(chunks), compresslevel=1)
    transport = HttpTransport(parse_agent_url(cfg.intake_url), timeout=cfg.timeout,
                              headers=intake_headers(cfg.api_key))
    try:
        result = transport.send("POST", encoder.path, body,
                                {"X-Datadog-Reported-Languages": encoder.languages(chunks)})
    finally:
        transport.close()
    where = f"the Datadog intake at {cfg.intake_url} (site {cfg.site})"
    if result.status == 0:
        print(f"otel-dd-bridge check: intake unreachable at {cfg.intake_url}: {result.error}",
              file=sys.stderr)
        return EXIT_FAILED
    if result.status in (401, 403):
        print(f"otel-dd-bridge check: {where} rejected the API key (HTTP {result.status}): "
              "check DD_API_KEY and that it belongs to DD_SITE", file=sys.stderr)
        return EXIT_FAILED
    if result.status == 404:
        print(f"otel-dd-bridge check: {where} answered 404: wrong site or intake URL?",
              file=sys.stderr)
        return EXIT_FAILED
    if not 200 <= result.status < 300:
        print(f"otel-dd-bridge check: {where} answered HTTP {result.status}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{where} accepted a probe trace (HTTP {result.status})")
    print("OK: traces would be delivered")
    return EXIT_OK


def _split_chunks(chunks: list[Any], limit: int) -> list[Any]:
    """Cut traces of more than ``limit`` spans into chunks of at most ``limit``.

    The Agent and the intake take a trace in several chunks (that is how partial flushes of
    long traces arrive); each part repeats the sampling priority, decision maker and upper
    trace-id half on its first span, so every part is kept and joined the same way.
    """
    from otel_dd_bridge.model import TraceChunk

    out: list[Any] = []
    for c in chunks:
        if len(c.spans) <= limit:
            out.append(c)
            continue
        first = c.spans[0]
        carried_meta = {k: first.meta[k] for k in ("_dd.p.dm", "_dd.p.tid", "_dd.origin")
                        if k in first.meta}
        prio = first.metrics.get("_sampling_priority_v1")
        for i in range(0, len(c.spans), limit):
            part = c.spans[i:i + limit]
            for k, v in carried_meta.items():
                part[0].meta.setdefault(k, v)
            if prio is not None:
                part[0].metrics.setdefault("_sampling_priority_v1", prio)
            out.append(TraceChunk(spans=part, priority=c.priority, origin=c.origin,
                                  tags=dict(c.tags), dropped_trace=c.dropped_trace,
                                  payload=c.payload))
    return out


def _send(args: argparse.Namespace) -> int:
    """Parse, validate, then deliver (or print with --dry-run). See the module's exit codes."""
    import threading

    from otel_dd_bridge._telemetry import ExportCounters
    from otel_dd_bridge.config import resolve_config
    from otel_dd_bridge.spanfile import build_chunks, span_to_record
    from otel_dd_bridge.waterfall import trace_id_text

    try:
        cfg = resolve_config(agent_url=args.agent_url, service=args.service, env=args.env,
                             mode=args.mode)
    except ValueError as exc:
        print(f"otel-dd-bridge send: {exc}", file=sys.stderr)
        return EXIT_USAGE
    warnings: list[str] = []
    try:
        records, errors = _read_records(args.files, args.format, warnings)
    except OSError as exc:
        print(f"otel-dd-bridge send: cannot read {exc.filename}: {exc.strerror}",
              file=sys.stderr)
        return EXIT_USAGE
    for w in warnings:
        print(f"otel-dd-bridge send: warning: {w}", file=sys.stderr)
    if errors and not args.partial:
        print(f"otel-dd-bridge send: {errors[0]}", file=sys.stderr)
        return EXIT_MALFORMED
    chunks, bad = build_chunks(
        records, trace_key=args.trace_key, parent_key=args.parent_key,
        default_service=cfg.service, env=cfg.env, version=cfg.version, tags=cfg.tags,
        partial=args.partial,
    )
    errors += bad
    if errors and not args.partial:
        print(f"otel-dd-bridge send: {errors[0]}", file=sys.stderr)
        return EXIT_MALFORMED
    for e in errors:
        print(f"otel-dd-bridge send: skipped: {e}", file=sys.stderr)
    n_spans = sum(len(c.spans) for c in chunks)
    if args.dry_run:
        json.dump([[span_to_record(s) for s in c.spans] for c in chunks], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_PARTIAL if errors else EXIT_OK
    if not chunks:
        print("otel-dd-bridge send: no span to send", file=sys.stderr)
        return EXIT_PARTIAL if errors else EXIT_MALFORMED
    counters = ExportCounters()
    try:
        delivery, transport, where = _make_delivery(cfg, counters, threading.Event())
    except ValueError as exc:
        print(f"otel-dd-bridge send: {exc}", file=sys.stderr)
        return EXIT_USAGE
    chunks = _split_chunks(chunks, args.batch_spans)
    progress = _Progress(n_spans, not args.quiet)
    ok = True
    try:
        batch: list[Any] = []
        size = 0
        for chunk in chunks + [None]:
            if chunk is not None:
                batch.append(chunk)
                size += len(chunk.spans)
            if batch and (chunk is None or size >= args.batch_spans):
                ok = delivery.deliver(batch) and ok
                progress.advance(size)
                batch, size = [], 0
    finally:
        progress.close()
        transport.close()
    stats = counters.snapshot()
    if not ok:
        lost = {k: v for k, v in stats.items() if k.startswith("dropped.") and v}
        print(f"otel-dd-bridge send: {where} did not take every span: "
              + ", ".join(f"{k[8:]}={v}" for k, v in sorted(lost.items())), file=sys.stderr)
        return EXIT_FAILED
    if not args.quiet:
        ids = sorted({trace_id_text(c.spans[0]) if "_dd.p.tid" in c.spans[0].meta
                      else f"{c.spans[0].trace_id:016x}" for c in chunks})
        print(f"sent {n_spans} span{'s' if n_spans != 1 else ''} in {len(ids)} "
              f"trace{'s' if len(ids) != 1 else ''} to {where}")
        for tid in ids[:10]:
            print(f"  trace {tid}")
    return EXIT_PARTIAL if errors else EXIT_OK


def _view(args: argparse.Namespace) -> int:
    from otel_dd_bridge.spanfile import build_chunks
    from otel_dd_bridge.waterfall import group_traces, render_waterfall, trace_id_text

    warnings: list[str] = []
    try:
        records, errors = _read_records(args.files, args.format, warnings)
    except OSError as exc:
        print(f"otel-dd-bridge view: cannot read {exc.filename}: {exc.strerror}",
              file=sys.stderr)
        return EXIT_USAGE
    for w in warnings:
        print(f"otel-dd-bridge view: warning: {w}", file=sys.stderr)
    if not errors:
        chunks, errors = build_chunks(records, default_service="unnamed-service")
    if errors:
        print(f"otel-dd-bridge view: {errors[0]}", file=sys.stderr)
        return EXIT_MALFORMED
    traces = group_traces(s for c in chunks for s in c.spans)
    if args.trace:
        want = args.trace.lower().removeprefix("0x")
        picked = []
        for tr in traces:
            full = next((trace_id_text(s) for s in tr if s.meta.get("_dd.p.tid")),
                        f"{tr[0].trace_id:016x}")
            if want in (full, full[-16:], str(tr[0].trace_id)) or (
                    len(want) > 16 and want.rjust(32, "0") == full.rjust(32, "0")):
                picked.append(tr)
        if not picked:
            print(f"otel-dd-bridge view: no trace {args.trace} in the input", file=sys.stderr)
            return EXIT_FAILED
        traces = picked
    if not traces:
        print("otel-dd-bridge view: the input holds no span", file=sys.stderr)
        return EXIT_FAILED
    tty = sys.stdout.isatty()
    color = args.color == "always" or (args.color == "auto" and tty
                                       and os.environ.get("NO_COLOR") is None)
    width = args.width or (min(shutil.get_terminal_size().columns, 160) if tty else 80)
    sys.stdout.write(render_waterfall(traces, width=width, color=color))
    return EXIT_OK


_SEND_DESCRIPTION = """Submit spans to the Datadog Agent (or, agentless, the intake).

One record is one span (JSON object, JSON array of objects, JSON Lines, or YAML):
  name (required), service (required unless --service/DD_SERVICE), resource (default name),
  type, start and end (RFC 3339 with a zone, or epoch s/ms/us/ns) or duration (seconds or
  "1h2m3s"), id (local id), parent (local id of the parent), trace (a trace key per record),
  tags {text: text}, metrics {text: number}, error (bool), error_message, error_type,
  error_stack.
A recording of DatadogFileExporter (OTEL_TRACES_EXPORTER=datadog_file) is replayed as is.
Malformed input: one line naming file, line and field; nothing is sent unless --partial."""

_SEND_EXAMPLES = """examples:
  echo '{"name":"backup","service":"cron","start":"2026-12-02T03:00:00Z","duration":"42m"}' \\
    | otel-dd-bridge send -
  # a CI pipeline: each stage sends its own span, joined by the commit
  otel-dd-bridge send --trace-key "$GIT_SHA" pipeline.json          # {"id": "pipeline", ...}
  otel-dd-bridge send --trace-key "$GIT_SHA" --parent-key pipeline build.json
  otel-dd-bridge send --dry-run recorded.jsonl
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``otel-dd-bridge`` command."""
    parser = argparse.ArgumentParser(
        prog="otel-dd-bridge",
        description="OpenTelemetry to Datadog APM bridge.",
        epilog="example: otel-dd-bridge demo",
    )
    parser.add_argument("--version", action="version", version=f"otel-dd-bridge {__version__}")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser(
        "demo",
        help="trace a sample request into a local Datadog test agent and show what it received",
        epilog="example: otel-dd-bridge demo --json",
    )
    demo.add_argument("--test-agent", help="path of the ddapm-test-agent executable")
    demo.add_argument("--json", action="store_true", help="also print the raw spans as JSON")
    demo.add_argument("--web-ui", action="store_true",
                      help="also start the test agent's web UI on 127.0.0.1 (a free port), print "
                           "its URL and keep the agent running until Ctrl-C")
    demo.add_argument("--web-ui-port", type=int, metavar="PORT",
                      help="like --web-ui, on this port (still 127.0.0.1 only)")
    demo.add_argument("--keep", action="store_true",
                      help="keep the test agent running until Ctrl-C (implied by --web-ui)")
    check = sub.add_parser(
        "check",
        help="show the resolved configuration and probe the Agent (or the intake)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  DD_TRACE_AGENT_URL=unix:///var/run/datadog/apm.socket otel-dd-bridge check\n"
               "  DD_API_KEY=... DD_SITE=datadoghq.eu otel-dd-bridge check --mode agentless\n"
               "\nagentless: sends one small probe trace (service otel-dd-bridge-check).\n"
               "exit codes: 0 traces would be delivered, 1 they would not (the line says why),\n"
               "2 configuration error",
    )
    check.add_argument("--agent-url", help="override the Agent URL for this check")
    check.add_argument("--mode", choices=("agent", "agentless"),
                       help="override the mode for this check (default: OTEL_DD_BRIDGE_MODE)")
    raw = argparse.RawDescriptionHelpFormatter
    send = sub.add_parser(
        "send", formatter_class=raw,
        help="submit spans from a JSON / JSON Lines / YAML file or a recording",
        description=_SEND_DESCRIPTION,
        epilog=_SEND_EXAMPLES + "\n" + _EXIT_CODES,
    )
    send.add_argument("files", nargs="+", metavar="FILE",
                      help="span file(s), or - for standard input")
    send.add_argument("--trace-key", metavar="TEXT",
                      help="derive the 128-bit trace id (and the span ids of local ids) from TEXT, "
                           "e.g. the git commit: independent sends with the same key form one trace")
    send.add_argument("--parent-key", metavar="TEXT",
                      help="parent of the records without 'parent': the span whose local id is "
                           "TEXT in the trace of --trace-key (sent by another invocation)")
    send.add_argument("--dry-run", action="store_true",
                      help="print the Datadog payload as JSON instead of sending it")
    send.add_argument("--partial", action="store_true",
                      help="skip malformed records (each reported) and send the rest")
    send.add_argument("--format", choices=("auto", "json", "jsonl", "yaml"), default="auto",
                      help="input format (default: by file extension, else by content)")
    send.add_argument("--service", help="service of records without one (default: DD_SERVICE)")
    send.add_argument("--env", help="env tag of records without one (default: DD_ENV)")
    send.add_argument("--agent-url", help="Agent URL (default: DD_TRACE_AGENT_URL ...)")
    send.add_argument("--mode", choices=("agent", "agentless"),
                      help="agent or agentless (default: OTEL_DD_BRIDGE_MODE)")
    send.add_argument("--batch-spans", type=int, default=1000, metavar="N",
                      help="spans per request (default 1000)")
    send.add_argument("-q", "--quiet", action="store_true",
                      help="no progress bar and no summary")
    view = sub.add_parser(
        "view", formatter_class=raw,
        help="draw the traces of a recording or span file as a terminal waterfall",
        epilog="examples:\n  otel-dd-bridge view spans.jsonl\n"
               "  otel-dd-bridge view --trace 4bf92f3577b34da6a3ce929d0e0e4736 spans.jsonl\n"
               "  cat spans.jsonl | otel-dd-bridge view - | less -R\n\n" + _EXIT_CODES,
    )
    view.add_argument("files", nargs="+", metavar="FILE",
                      help="recording(s) or span file(s), or - for standard input")
    view.add_argument("--trace", metavar="ID",
                      help="show only this trace (32 or 16 hex digits, or the decimal low 64 bits)")
    view.add_argument("--width", type=int, default=0,
                      help="columns (default: the terminal's, 80 when piped)")
    view.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                      help="ANSI colors (default: on a terminal only)")
    view.add_argument("--format", choices=("auto", "json", "jsonl", "yaml"), default="auto",
                      help="input format (default: by file extension, else by content)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.web_ui_port is not None and not 0 < args.web_ui_port < 65536:
            parser.error("--web-ui-port must be between 1 and 65535")
        return _demo(args)
    if args.command == "check":
        return _check(args)
    if args.command == "send":
        if args.batch_spans <= 0:
            parser.error("--batch-spans must be positive")
        return _send(args)
    if args.command == "view":
        return _view(args)
    parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
