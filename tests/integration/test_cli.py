"""The otel-dd-bridge command, run as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent / "otel-dd-bridge"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "OTEL_"))}
    base.update(env or {})
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, env=base, timeout=60)


def test_version_and_help() -> None:
    assert _run("--version").stdout.startswith("otel-dd-bridge ")
    out = _run("--help").stdout
    assert "demo" in out and "check" in out


def test_check_against_the_real_agent(agent) -> None:
    r = _run("check", env={"DD_TRACE_AGENT_URL": agent.url, "DD_API_KEY": "abcdef0123456789",
                           "DD_SERVICE": "svc"})
    assert r.returncode == 0, r.stderr
    assert "OK: traces would be delivered" in r.stdout
    assert "v0.5 traces: yes" in r.stdout
    assert "<- DD_SERVICE" in r.stdout
    assert "abcdef0123456789" not in r.stdout + r.stderr  # the key is redacted
    assert "accelerator: compiled (model, translate, encoding._fastpack, _gcutil)" in r.stdout
    off = _run("check", "--agent-url", agent.url, env={"OTEL_DD_BRIDGE_NO_EXTENSIONS": "1"})
    assert "accelerator: off (OTEL_DD_BRIDGE_NO_EXTENSIONS is set): pure Python" in off.stdout


def test_check_over_the_unix_socket(test_agent_uds) -> None:
    r = _run("check", "--agent-url", f"unix://{test_agent_uds.uds_path}")
    assert r.returncode == 0, r.stderr


def test_check_reports_unreachable_and_missing_socket(tmp_path) -> None:
    r = _run("check", "--agent-url", "http://127.0.0.1:9")
    assert r.returncode == 1 and "Agent unreachable" in r.stderr
    r = _run("check", "--agent-url", f"unix://{tmp_path}/none.sock")
    assert r.returncode == 1 and "does not exist" in r.stderr
    r = _run("check", "--agent-url", "ftp://x")
    assert r.returncode == 2 and "agent_url" in r.stderr


def test_demo_end_to_end() -> None:
    venv = os.environ.get("OTEL_DD_BRIDGE_TEST_AGENT_VENV",
                          str(Path(__file__).resolve().parents[2] / ".venvs" / "testagent"))
    r = _run("demo", "--test-agent", str(Path(venv) / "bin" / "ddapm-test-agent"))
    assert r.returncode == 0, r.stderr
    assert "matchmaker | http.server.request | GET /pair/beer | type=web" in r.stdout
    assert "postgresql.query" in r.stdout and "ERROR taster is down" in r.stdout
    assert "run `otel-dd-bridge demo --web-ui`" in r.stdout  # 1.69.1 has a web UI


def test_demo_web_ui_on_loopback_until_ctrl_c() -> None:
    """--web-ui prints a loopback URL that answers HTTP (showing our trace) until Ctrl-C."""
    import re
    import signal
    import socket
    import threading
    import time
    import urllib.request

    venv = os.environ.get("OTEL_DD_BRIDGE_TEST_AGENT_VENV",
                          str(Path(__file__).resolve().parents[2] / ".venvs" / "testagent"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "OTEL_"))}
    proc = subprocess.Popen(
        [str(BIN), "demo", "--web-ui",
         "--test-agent", str(Path(venv) / "bin" / "ddapm-test-agent")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # SIGINT is ignored in children of a backgrounded non-interactive shell: undo that so
        # the signal below is a real Ctrl-C for the demo.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: list[str] = []
    stdout = proc.stdout
    assert stdout is not None
    threading.Thread(target=lambda: lines.extend(stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while not any("press Ctrl-C" in line for line in lines):
            assert proc.poll() is None, (lines, proc.stderr.read() if proc.stderr else "")
            assert time.monotonic() < deadline, lines
            time.sleep(0.1)
        out = "".join(lines)
        m = re.search(r"Test agent web UI: (http://127\.0\.0\.1:(\d+)/)", out)
        assert m, out
        assert "matchmaker | http.server.request | GET /pair/beer" in out
        url, port = m.group(1), int(m.group(2))
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.status == 200 and "Test Agent" in resp.read().decode()
        with urllib.request.urlopen(url + "requests", timeout=5) as resp:
            assert "matchmaker" in resp.read().decode()  # the UI shows what demo sent
        with socket.socket() as s:  # bound to 127.0.0.1 only, not to every address
            assert s.connect_ex(("127.0.0.2", port)) != 0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        with socket.socket() as s:  # the agent (and its UI) stopped with the demo
            assert s.connect_ex(("127.0.0.1", port)) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
