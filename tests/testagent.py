"""Runs Datadog's real test agent (``ddapm-test-agent``) for the integration tests.

It lives in its own virtualenv (it pins an older ``opentelemetry-proto`` than our SDK), given by
``OTEL_DD_BRIDGE_TEST_AGENT_VENV`` (``scripts/run.sh test`` sets it) or ``.venvs/testagent``.
It listens on a free loopback port (or a Unix socket), with its OTLP ports moved to free ports
and the request checks ``trace_count_header``, ``meta_tracer_version_header`` and
``trace_content_length`` enabled (a failed check answers 400, which fails our export).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CHECKS = "trace_count_header,meta_tracer_version_header,trace_content_length"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _UDSConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class TestAgent:
    """A running ``ddapm-test-agent`` process."""

    __test__ = False

    def __init__(self, uds_path: str | None = None) -> None:
        venv = os.environ.get("OTEL_DD_BRIDGE_TEST_AGENT_VENV", str(REPO / ".venvs" / "testagent"))
        self.binary = Path(venv) / "bin" / "ddapm-test-agent"
        if not self.binary.exists():
            raise RuntimeError(
                f"{self.binary} not found: run `bash scripts/run.sh test`, which installs the "
                "test agent into its own virtualenv"
            )
        self.port = _free_port()
        self.uds_path = uds_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="test-agent-", suffix=".log", delete=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TestAgent:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DD_", "OTEL_")) and k != "ENABLED_CHECKS"}
        env["ENABLED_CHECKS"] = CHECKS
        args = [str(self.binary), "--host", "127.0.0.1", "--port", str(self.port),
                "--otlp-http-port", str(_free_port()), "--otlp-grpc-port", str(_free_port())]
        if self.uds_path:
            args += ["--trace-uds-socket", self.uds_path]
        self.proc = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"test agent exited at start:\n{self._tail()}")
            try:
                self._request("GET", "/info")
                if not self.uds_path or os.path.exists(self.uds_path):
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"test agent not ready within 30 s:\n{self._tail()}")

    def _tail(self) -> str:
        return Path(self._log.name).read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def _request(self, method: str, path: str) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status >= 400:
                raise AssertionError(f"test agent {path}: {resp.status} {body[:500]!r}")
            return json.loads(body) if body.strip().startswith((b"[", b"{")) else body
        finally:
            conn.close()

    def clear(self) -> None:
        self._request("GET", "/test/session/clear")

    def set_rates(self, rates: dict[str, float]) -> None:
        """Make the agent answer with these ``rate_by_service`` rates (token-less session)."""
        import urllib.parse

        q = urllib.parse.urlencode({"agent_sample_rate_by_service": json.dumps(rates)})
        self._request("GET", f"/test/session/start?{q}")

    def traces(self) -> list[list[dict[str, Any]]]:
        out: list[list[dict[str, Any]]] = self._request("GET", "/test/session/traces")
        return out

    def requests(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self._request("GET", "/test/session/requests")
        return out

    def wait_for_traces(self, n: int, timeout: float = 10.0) -> list[list[dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        traces = self.traces()
        while len(traces) < n and time.monotonic() < deadline:
            time.sleep(0.1)
            traces = self.traces()
        assert len(traces) >= n, f"expected {n} traces, got {len(traces)}:\n{self._tail()}"
        return traces
