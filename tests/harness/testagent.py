"""Runs Datadog's real test agent (``ddapm-test-agent``) as a subprocess for integration tests.

The agent lives in its own virtualenv (it pins dependencies that clash with our SDK), given by
``OTEL_DD_BRIDGE_TEST_AGENT_VENV`` or ``<repo>/.venvs/testagent``. A missing venv is an error,
never a skip.

The agent binds 127.0.0.1 on a free port (and optionally a Unix socket), with its OTLP
listeners moved to free ports (it would grab 4317/4318 otherwise) and the request checks
``trace_count_header``, ``meta_tracer_version_header`` and ``trace_content_length`` enabled:
a payload failing one is answered ``400`` with a text report of the check trace.

Its environment is scrubbed: ``DD_TRACE_AGENT_URL``/``DD_AGENT_URL`` would make it proxy
everything to a real agent, and most of its options default from env vars (``PORT``, ``HOST``,
``ENABLED_CHECKS``, ``DD_APM_RECEIVER_SOCKET``, ``DD_POOL_TRACE_CHECK_FAILURES`` ...).
Stdlib only.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
VENV_ENV = "OTEL_DD_BRIDGE_TEST_AGENT_VENV"
CHECKS = "trace_count_header,meta_tracer_version_header,trace_content_length"
START_TIMEOUT = 30.0

# Env vars the test agent reads as option defaults (besides every DD_* one).
_AGENT_ENV = {
    "PORT", "HOST", "OTLP_HTTP_PORT", "OTLP_GRPC_PORT", "ENABLED_CHECKS", "LOG_LEVEL",
    "LOG_SPAN_FMT", "WEB_UI_PORT", "MAX_REQUESTS", "TEST_AGENT_VERSION", "ORG_PROP_MARKER",
    "DISABLE_LLMOBS_DATA_FORWARDING",
}
_AGENT_ENV_PREFIXES = ("DD_", "OTEL_", "SNAPSHOT_", "VCR_")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class UDSConnection(http.client.HTTPConnection):
    """``http.client`` over a Unix domain socket."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.uds_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.uds_path)
        self.sock = sock


class TestAgent:
    """A running ``ddapm-test-agent`` process (TCP on loopback, plus an optional UDS)."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, venv: str | None = None, uds_path: str | None = None) -> None:
        venv = venv or os.environ.get(VENV_ENV) or str(REPO / ".venvs" / "testagent")
        self.venv = Path(venv)
        self.binary = self.venv / "bin" / "ddapm-test-agent"
        self.uds_path = uds_path
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self._workdir: str | None = None
        self._log_path: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int | None = None) -> TestAgent:
        if not self.binary.exists():
            raise RuntimeError(
                f"ddapm-test-agent not found at {self.binary}. Install it into its own venv, e.g. "
                f"`python -m venv {self.venv} && {self.venv}/bin/pip install ddapm-test-agent==1.69.1`, "
                f"or point {VENV_ENV} at a venv that has it."
            )
        if self.proc is not None:
            raise RuntimeError("test agent already started")
        # Its cwd gets snapshots/ and vcr-cassettes/ defaults: keep them out of the repo.
        self._workdir = tempfile.mkdtemp(prefix="dd-test-agent-")
        self._log_path = os.path.join(self._workdir, "agent.log")
        if self.uds_path and os.path.exists(self.uds_path):
            os.unlink(self.uds_path)
        env = {k: v for k, v in os.environ.items()
               if k not in _AGENT_ENV and not k.startswith(_AGENT_ENV_PREFIXES)}
        # Not --enabled-checks: its argparse type is typing.List, which rejects every value.
        env["ENABLED_CHECKS"] = CHECKS
        self.port = port or _free_port()
        args = [
            str(self.binary),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--otlp-http-port", str(_free_port()),
            "--otlp-grpc-port", str(_free_port()),
            "--snapshot-dir", os.path.join(self._workdir, "snapshots"),
            "--vcr-cassettes-directory", os.path.join(self._workdir, "vcr-cassettes"),
            "--agent-url", "",  # never proxy to a real agent
        ]
        if self.uds_path:
            args += ["--trace-uds-socket", self.uds_path]
        t0 = time.monotonic()
        with open(self._log_path, "wb") as log:
            self.proc = subprocess.Popen(args, env=env, cwd=self._workdir, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = t0 + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self._cleanup()
                raise RuntimeError(f"ddapm-test-agent exited with {rc} at start:\n{self.log_tail()}")
            try:
                status, _ = self._raw("GET", "/info", timeout=1.0)
                if status == 200 and (not self.uds_path or os.path.exists(self.uds_path)):
                    self.startup_seconds = time.monotonic() - t0
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"ddapm-test-agent not ready on {self.url} within {START_TIMEOUT:.0f} s:\n{tail}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._cleanup()

    def kill(self) -> None:
        """SIGKILL the agent (a crash: no graceful close of connections); the port is kept."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._cleanup()

    def restart(self, downtime: float = 0.0) -> TestAgent:
        """Kill the agent, stay down ``downtime`` seconds, start it again on the same port/socket.

        Everything it had received is lost, as with a real Agent restart.
        """
        port = self.port
        self.kill()
        if downtime:
            time.sleep(downtime)
        return self.start(port=port)

    def _cleanup(self) -> None:
        self.proc = None
        if self.uds_path and os.path.exists(self.uds_path):
            try:
                os.unlink(self.uds_path)
            except OSError:
                pass
        if self._workdir:
            self._last_log = self.log_tail()
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
            self._log_path = None

    def __enter__(self) -> TestAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, n: int = 4000) -> str:
        """The end of the agent's combined stdout/stderr."""
        if self._log_path and os.path.exists(self._log_path):
            return Path(self._log_path).read_text(errors="replace")[-n:]
        return getattr(self, "_last_log", "")[-n:]

    # -- HTTP --------------------------------------------------------------------------------

    def _raw(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def _get_json(self, path: str) -> Any:
        status, body = self._raw("GET", path)
        if status >= 400:
            raise AssertionError(f"test agent GET {path}: {status} {body[:2000]!r}")
        return json.loads(body) if body.strip() else None

    def _get(self, path: str) -> None:
        status, body = self._raw("GET", path)
        if status >= 400:
            raise AssertionError(f"test agent GET {path}: {status} {body[:2000]!r}")

    @staticmethod
    def _q(path: str, **params: Any) -> str:
        params = {k: v for k, v in params.items() if v is not None}
        return f"{path}?{urllib.parse.urlencode(params)}" if params else path

    # -- session API -------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = self._get_json("/info")
        return out

    def traces(self, token: str | None = None) -> list[list[dict[str, Any]]]:
        """Received trace chunks (lists of span dicts), for ``token`` or the token-less session."""
        out: list[list[dict[str, Any]]] = self._get_json(
            self._q("/test/session/traces", test_session_token=token))
        return out

    def requests(self, token: str | None = None) -> list[dict[str, Any]]:
        """Every request the agent recorded: dicts with headers, body (base64), url, method."""
        out: list[dict[str, Any]] = self._get_json(
            self._q("/test/session/requests", test_session_token=token))
        return out

    def clear(self, token: str | None = None) -> None:
        self._get(self._q("/test/session/clear", test_session_token=token))

    def start_session(self, token: str | None, rate_by_service: dict[str, float] | None = None) -> None:
        """Start a session; the agent then answers trace posts with ``rate_by_service``."""
        self._get(self._q("/test/session/start", test_session_token=token,
                          agent_sample_rate_by_service=json.dumps(rate_by_service or {})))

    def set_rates(self, rates: dict[str, float]) -> None:
        """Token-less shorthand for :meth:`start_session` (kept for the older harness API)."""
        self.start_session(None, rates)

    def wait_for_traces(self, n: int, timeout: float = 10.0, token: str | None = None) -> list[list[dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        traces = self.traces(token)
        while len(traces) < n and time.monotonic() < deadline:
            time.sleep(0.05)
            traces = self.traces(token)
        if len(traces) < n:
            raise AssertionError(
                f"expected >= {n} traces within {timeout} s, got {len(traces)}:\n{self.log_tail()}")
        return traces
