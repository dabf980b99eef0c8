"""The ``otel-dd-bridge`` command.

``otel-dd-bridge demo`` starts a local Datadog test agent (``ddapm-test-agent``), traces a small
web request with the OpenTelemetry SDK and this exporter, reads back what the agent received
and prints it as a tree. No Datadog account needed.
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


def _start_agent(binary: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DD_TRACE_AGENT_URL", "DD_AGENT_URL")}
    logdir = Path(tempfile.mkdtemp(prefix="otel-dd-bridge-demo-"))
    log = open(logdir / "test-agent.log", "wb")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen(
        [binary, "--host", "127.0.0.1", "--port", str(port),
         "--otlp-http-port", str(_free_port()), "--otlp-grpc-port", str(_free_port())],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
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


def _demo(args: argparse.Namespace) -> int:
    binary = _find_test_agent(args.test_agent)
    proc, url, logdir = _start_agent(binary)
    try:
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
        print(f"The Datadog test agent at {url} received:")
        print(_render(traces))
        if args.json:
            print(json.dumps(traces, indent=2, sort_keys=True))
        return 0
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(logdir, ignore_errors=True)


def _check(args: argparse.Namespace) -> int:
    """Print the resolved configuration with sources, then probe the Agent's /info."""
    from otel_dd_bridge.config import SETTINGS, resolve_config
    from otel_dd_bridge.transport import HttpTransport, agent_headers

    try:
        cfg = resolve_config(agent_url=args.agent_url)
    except ValueError as exc:
        print(f"otel-dd-bridge check: {exc}", file=sys.stderr)
        return 2
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
    if cfg.mode != "agent":
        print("otel-dd-bridge check: agentless mode is not available yet", file=sys.stderr)
        return 1
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
    check = sub.add_parser(
        "check",
        help="show the resolved configuration and probe the Agent",
        epilog="example: DD_TRACE_AGENT_URL=unix:///var/run/datadog/apm.socket otel-dd-bridge check",
    )
    check.add_argument("--agent-url", help="override the Agent URL for this check")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    if args.command == "check":
        return _check(args)
    parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
