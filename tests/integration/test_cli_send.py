"""``otel-dd-bridge send`` and ``view``, run as subprocesses against the real Datadog test agent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from otel_dd_bridge.spanfile import span_id_from_key, trace_id_from_key

BIN = Path(sys.executable).parent / "otel-dd-bridge"
HOUR = 3600 * 10**9


def _run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "OTEL_"))}
    base.update(env or {})
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, env=base,
                          timeout=60, input=stdin, cwd=cwd)


def _spans(agent: Any, n: int) -> list[dict[str, Any]]:
    traces = agent.wait_for_traces(1)
    spans = [s for t in traces for s in t]
    deadline_traces = traces
    while len(spans) < n:  # chunks of one trace may arrive in separate requests
        deadline_traces = agent.wait_for_traces(len(deadline_traces) + 1, timeout=5)
        spans = [s for t in deadline_traces for s in t]
    return spans


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_send_by_hand_from_stdin(agent) -> None:
    rec = {"name": "nightly.backup", "service": "cron", "resource": "backup db1", "type": "worker",
           "start": "2026-12-02T03:00:00Z", "duration": "42m", "tags": {"db": "db1"},
           "metrics": {"rows": 1200}}
    r = _run("send", "--agent-url", agent.url, "-", stdin=json.dumps(rec))
    assert r.returncode == 0, r.stderr
    assert "sent 1 span in 1 trace" in r.stdout and r.stderr == ""  # no progress bar when piped
    (span,) = _spans(agent, 1)
    assert (span["name"], span["service"], span["resource"], span["type"]) == (
        "nightly.backup", "cron", "backup db1", "worker")
    start = datetime(2026, 12, 2, 3, 0, tzinfo=timezone.utc)
    assert span["start"] == int(start.timestamp()) * 10**9 and span["duration"] == 42 * 60 * 10**9
    assert span["meta"]["db"] == "db1" and span["metrics"]["rows"] == 1200
    assert span["metrics"]["_sampling_priority_v1"] == 2 and span["parent_id"] == 0


def test_ci_pipeline_three_invocations_form_one_trace(agent, tmp_path: Path) -> None:
    """Each stage is sent by a different job; only the commit sha is shared."""
    sha = "9fceb02d0ae598e95dc970b74767f19372d61af8"
    t0 = int(datetime(2026, 12, 2, 10, 0, tzinfo=timezone.utc).timestamp())  # epoch seconds
    stages = [
        ("pipeline", None, {"name": "ci.pipeline", "resource": "pipeline main", "start": t0,
                            "end": t0 + 3 * 3600}),
        ("build", "pipeline", {"name": "ci.stage", "resource": "build", "start": t0,
                               "duration": "25m"}),
        ("deploy", "build", {"name": "ci.stage", "resource": "deploy production",
                             "start": "2026-12-02T10:25:00Z", "duration": "2h35m",
                             "error": True, "error_message": "canary failed"}),
    ]
    for local_id, parent, fields in stages:
        path = _write(tmp_path / f"{local_id}.json", [{"id": local_id, "service": "ci", **fields}])
        args = ["send", "--agent-url", agent.url, "--trace-key", sha, str(path)]
        if parent:
            args += ["--parent-key", parent]
        r = _run(*args)
        assert r.returncode == 0, r.stderr
    spans = _spans(agent, 3)
    assert len(spans) == 3
    trace128 = trace_id_from_key(sha)
    by = {s["resource"]: s for s in spans}
    assert {s["trace_id"] for s in spans} == {trace128 & (2**64 - 1)}
    assert {s["meta"].get("_dd.p.tid") for s in spans} == {f"{trace128 >> 64:016x}"}
    pipeline, build, deploy = by["pipeline main"], by["build"], by["deploy production"]
    assert pipeline["parent_id"] == 0
    assert build["parent_id"] == pipeline["span_id"] == span_id_from_key(sha, "pipeline")
    assert deploy["parent_id"] == build["span_id"]
    assert pipeline["duration"] == 3 * HOUR and deploy["duration"] == (2 * 60 + 35) * 60 * 10**9
    assert deploy["error"] == 1 and deploy["meta"]["error.msg"] == "canary failed"


def test_malformed_input_names_file_line_and_field_and_sends_nothing(agent, tmp_path) -> None:
    good = {"name": "a", "service": "s", "start": 1796205600, "duration": 1}
    path = _write(tmp_path / "stages.jsonl", [good, good, {**good, "end": 1796205599,
                                                           "duration": None}])
    r = _run("send", "--agent-url", agent.url, str(path))
    assert r.returncode == 3
    lines = r.stderr.strip().splitlines()
    assert lines == [f"otel-dd-bridge send: {path}:3: end: is before start"]
    yaml_path = tmp_path / "stage.yaml"
    yaml_path.write_text("name: build\nservice: ci\nstart: 2026-12-02T10:00:00Z\n"
                         "duration: 5 minutes\n")
    r = _run("send", "--agent-url", agent.url, str(yaml_path))
    assert r.returncode == 3 and f"{yaml_path}:4: duration:" in r.stderr
    array = tmp_path / "spans.json"
    array.write_text('[\n  {"name": "a", "service": "s", "duration": 1},\n'
                     '  {"name": "b",\n   "servic": "s",\n   "duration": 1}\n]\n')
    r = _run("send", "--agent-url", agent.url, str(array))
    assert r.returncode == 3 and f"{array}:4: servic: unknown field" in r.stderr
    assert agent.traces() == []
    # --partial: the good records go, the bad one is reported, exit 4
    r = _run("send", "--agent-url", agent.url, "--partial", str(path))
    assert r.returncode == 4 and f"{path}:3: end: is before start" in r.stderr
    assert len(_spans(agent, 2)) == 2


def test_dry_run_prints_the_payload_and_sends_nothing(agent, tmp_path) -> None:
    path = _write(tmp_path / "x.jsonl", [
        {"id": "r", "name": "Root Op!", "service": "My Service", "duration": 2},
        {"id": "c", "parent": "r", "name": "child", "service": "other", "duration": 1,
         "tags": {"k": "v" * 30000}},
    ])
    r = _run("send", "--agent-url", agent.url, "--dry-run", "--trace-key", "k1", str(path))
    assert r.returncode == 0, r.stderr
    payload = json.loads(r.stdout)
    (chunk,) = payload
    root, child = chunk
    assert root["name"] == "Root_Op" and root["service"] == "my_service"  # normalized
    assert child["parent_id"] == root["span_id"]
    assert len(child["meta"]["k"].encode()) == 25000 + 3  # truncated as the Agent does
    assert child["metrics"]["_top_level"] == 1  # other service than its parent
    assert agent.traces() == []


def test_unreachable_agent_and_bad_arguments(tmp_path) -> None:
    path = _write(tmp_path / "x.jsonl", [{"name": "a", "service": "s", "duration": 1}])
    env = {"OTEL_DD_BRIDGE_RETRY_TIMEOUT": "0.5"}
    r = _run("send", "--agent-url", "http://127.0.0.1:9", str(path), env=env)
    assert r.returncode == 1 and "did not take every span" in r.stderr
    r = _run("send", "--agent-url", "ftp://x", str(path))
    assert r.returncode == 2 and "agent_url" in r.stderr
    r = _run("send", str(tmp_path / "missing.jsonl"))
    assert r.returncode == 2 and "cannot read" in r.stderr
    for cmd in ("send", "view", "check", "demo"):
        out = _run(cmd, "--help").stdout
        assert "example" in out, cmd


def test_record_then_replay_and_view(agent, tmp_path) -> None:
    """OTel SDK -> DatadogFileExporter (via OTEL_TRACES_EXPORTER) -> send / view."""
    rec = tmp_path / "rec" / "spans.jsonl"
    script = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.resources import Resource\n"
        "from importlib.metadata import entry_points\n"
        "(ep,) = [e for e in entry_points(group='opentelemetry_traces_exporter')"
        " if e.name == 'datadog_file']\n"
        "p = TracerProvider(resource=Resource.create({'service.name': 'offline'}))\n"
        "p.add_span_processor(SimpleSpanProcessor(ep.load()()))\n"
        "t = p.get_tracer('t')\n"
        "with t.start_as_current_span('GET /a', kind=trace.SpanKind.SERVER,"
        " attributes={'http.request.method': 'GET', 'http.route': '/a'}):\n"
        "    with t.start_as_current_span('work'):\n"
        "        pass\n"
        "p.shutdown()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "OTEL_"))}
    env["OTEL_DD_BRIDGE_FILE_PATH"] = str(rec)
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    lines = rec.read_text().splitlines()
    assert len(lines) == 2 and oct(rec.stat().st_mode & 0o777) == "0o600"
    recorded = [json.loads(x) for x in lines]
    r = _run("send", "--agent-url", agent.url, str(rec))
    assert r.returncode == 0, r.stderr
    received = _spans(agent, 2)
    key = ("trace_id", "span_id", "parent_id", "service", "name", "resource", "start", "duration")
    assert sorted(tuple(s[k] for k in key) for s in received) == sorted(
        tuple(s[k] for k in key) for s in recorded)
    root = next(s for s in received if s["parent_id"] == 0)
    assert root["resource"] == "GET /a" and root["meta"]["_dd.p.dm"] == recorded[-1]["meta"][
        "_dd.p.dm"]
    v = _run("view", str(rec))
    assert v.returncode == 0, v.stderr
    assert "offline GET /a" in v.stdout and "`- offline work" in v.stdout
    assert "\x1b[" not in v.stdout and max(len(x) for x in v.stdout.splitlines()) <= 80
    tid = recorded[0]["meta"].get("_dd.p.tid", "") + f"{recorded[0]['trace_id']:016x}"
    assert _run("view", "--trace", tid, str(rec)).returncode == 0
    missing = _run("view", "--trace", "0" * 31 + "1", str(rec))
    assert missing.returncode == 1 and "no trace" in missing.stderr


# --------------------------------------------------------------------------- agentless


def _agentless_env(intake: Any) -> dict[str, str]:
    return {"DD_API_KEY": "0123456789abcdef0123456789abcdef",
            "OTEL_DD_BRIDGE_INTAKE_URL": intake.url, "OTEL_DD_BRIDGE_RETRY_TIMEOUT": "1"}


def test_send_agentless_ci_pipeline_to_the_fake_intake(tmp_path: Path) -> None:
    from tests.harness.fakeintake import TRACES_PATH, FakeIntake

    sha = "c0ffee"
    with FakeIntake() as intake:
        env = _agentless_env(intake)
        for local_id, parent in (("pipeline", None), ("build", "pipeline"), ("push", "build")):
            path = _write(tmp_path / f"{local_id}.json", [
                {"id": local_id, "name": "ci.stage", "resource": local_id, "service": "ci",
                 "start": "2026-12-02T10:00:00Z", "duration": "10m"}])
            args = ["send", "--mode", "agentless", "--trace-key", sha, str(path)]
            r = _run(*args, *(["--parent-key", parent] if parent else []), env=env)
            assert r.returncode == 0, r.stderr
            assert "Datadog intake" in r.stdout
            assert env["DD_API_KEY"] not in r.stdout + r.stderr
        reqs = intake.wait_for(3, path=TRACES_PATH)
        assert all(q.headers["dd-api-key"] == env["DD_API_KEY"] for q in reqs)
        spans = {s["resource"]: s for s in intake.spans()}
    tid = trace_id_from_key(sha)
    assert {s["traceID"] for s in spans.values()} == {tid & (2**64 - 1)}
    assert spans["pipeline"]["parentID"] == 0
    assert spans["build"]["parentID"] == spans["pipeline"]["spanID"]
    assert spans["push"]["parentID"] == spans["build"]["spanID"]
    assert spans["push"]["duration"] == 600 * 10**9


def test_check_agentless_probe_and_rejected_key() -> None:
    from tests.harness.fakeintake import TRACES_PATH, FakeIntake

    with FakeIntake() as intake:
        env = _agentless_env(intake)
        r = _run("check", "--mode", "agentless", env=env)
        assert r.returncode == 0, r.stderr
        assert "accepted a probe trace" in r.stdout and "OK: traces would be delivered" in r.stdout
        (req,) = intake.wait_for(1, path=TRACES_PATH)
        assert [s["service"] for s in intake.spans()] == ["otel-dd-bridge-check"]
        intake.reply(403)
        r = _run("check", "--mode", "agentless", env=env)
        assert r.returncode == 1 and "rejected the API key" in r.stderr
        intake.reply(404)
        r = _run("check", "--mode", "agentless", env=env)
        assert r.returncode == 1 and "wrong site or intake URL" in r.stderr
        assert env["DD_API_KEY"] not in r.stdout + r.stderr
    r = _run("check", "--mode", "agentless", env=env)  # the intake is gone
    assert r.returncode == 1 and "intake unreachable" in r.stderr


def test_yaml_without_pyyaml_says_how_to_get_it(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: a\nservice: s\nduration: 1\n")
    code = ("import sys; sys.modules['yaml'] = None\n"  # as if PyYAML were not installed
            "from otel_dd_bridge.cli import main\n"
            f"sys.exit(main(['send', '--dry-run', {str(path)!r}]))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3
    assert f"{path}:1: (yaml): YAML input needs PyYAML: pip install 'otel-dd-bridge[yaml]'" in (
        r.stderr)


def test_progress_bar_on_a_terminal_only(agent, tmp_path: Path) -> None:
    import pty

    path = _write(tmp_path / "many.jsonl", [
        {"id": i, "name": "step", "service": "batch", "start": 1796205600 + i, "duration": 1}
        for i in range(1200)])
    master, slave = pty.openpty()
    try:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "OTEL_"))}
        proc = subprocess.run(
            [str(BIN), "send", "--agent-url", agent.url, "--batch-spans", "400", str(path)],
            stdout=subprocess.PIPE, stderr=slave, env=base, timeout=60, text=True)
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    tty_err = b"".join(chunks).decode()
    assert proc.returncode == 0, tty_err
    assert "\rsending [" in tty_err and "1200/1200 spans" in tty_err and "400/1200" in tty_err
    assert "sent 1200 spans in 1 trace" in proc.stdout
    piped = _run("send", "--agent-url", agent.url, str(path))
    assert piped.returncode == 0 and piped.stderr == ""
    assert len([s for t in agent.traces() for s in t]) == 2400
