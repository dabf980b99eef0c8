"""The parity run, executed INSIDE the loopback-only namespace (never call it directly).

``tests/integration/test_miniagent_parity.py`` creates a :class:`~tests.harness.netns.NetNamespace`
and runs ``ip netns exec <ns> .venvs/dev/bin/python -m tests.harness.parity_driver --outdir D``.
In there, this script:

1. proves it is in that namespace (:func:`~tests.harness.miniagent.assert_isolated`);
2. starts two standalone fake intakes (``python -m tests.harness.fakeintake``): A for the
   mini-agent, B for our agentless mode;
3. starts the mini-agent forwarding to intake A, on free ports;
4. builds the span set (:mod:`tests.harness.parity_spans`) once and exports the same
   ``ReadableSpan`` objects (A) through our agent mode (v0.4) to the mini-agent and (B) through
   our agentless mode to intake B (B is skipped, with the reason recorded, when agentless mode
   cannot be constructed); B is synchronous: traces go out in ``export()``, client stats at
   ``shutdown()``;
5. waits until intake A has every span and the mini-agent's stats for the bucket of the last
   span end (it flushes a 10 s bucket after it closes: ~15 s after the spans when they start
   early in a bucket, which :func:`_wait_bucket_start` arranges);
6. writes ``result.json`` (span-id -> case, timings, errors, export results) next to
   ``intake_a.jsonl``, ``intake_b.jsonl`` and ``miniagent.log``; pytest decodes and compares.

Exit status 0 when the run completed (whatever the comparison will say), 1 with a message on
stderr and in ``result.json`` ``error`` when it could not (a test ERROR, not a failure).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from tests.harness.fakeintake import STATS_PATH, TRACES_PATH, Request, load_jsonl
from tests.harness.miniagent import MiniAgent, assert_isolated
from tests.harness.parity_spans import build_parity_spans

API_KEY = "parity-test-api-key"
BUCKET_NS = 10_000_000_000
INTAKE_START_TIMEOUT = 10.0


class _Intake:
    """A standalone fake intake subprocess writing JSON lines to ``out``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> _Intake:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.fakeintake", "--port", "0", "--out",
             str(self.out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            stdin=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + INTAKE_START_TIMEOUT
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if "listening on " in line:
                self.url = line.rsplit("listening on ", 1)[1].strip()
                return self
            if not line and self.proc.poll() is not None:
                break
        raise RuntimeError(f"fake intake did not start: {line!r}")

    def requests(self) -> list[Request]:
        return load_jsonl(str(self.out)) if self.out.exists() else []

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


def _span_ids(reqs: list[Request]) -> set[int]:
    ids: set[int] = set()
    for r in reqs:
        if r.path == TRACES_PATH:
            for tp in r.agent_payload()["tracerPayloads"]:
                for c in tp["chunks"]:
                    ids.update(s["spanID"] for s in c["spans"])
    return ids


def _stats_buckets(reqs: list[Request]) -> set[int]:
    starts: set[int] = set()
    for r in reqs:
        if r.path == STATS_PATH:
            for cp in r.stats_payload().get("Stats") or []:
                starts.update(int(b["Start"]) for b in cp.get("Stats") or [])
    return starts


def _wait_bucket_start() -> None:
    """Start the spans early in a 10 s bucket so they all land in one (one flush to wait for)."""
    into = time.time_ns() % BUCKET_NS
    if into > 7 * BUCKET_NS // 10:
        time.sleep((BUCKET_NS - into) / 1e9 + 0.05)


def run(outdir: Path, timeout: float) -> dict[str, Any]:
    """The whole run; returns what goes to ``result.json``."""
    assert_isolated()
    result: dict[str, Any] = {"timing": {}, "b_error": None}
    t0 = time.monotonic()
    intake_a = _Intake(outdir / "intake_a.jsonl").start()
    intake_b = _Intake(outdir / "intake_b.jsonl").start()
    agent = MiniAgent(intake_a.url, str(outdir / "miniagent.log"), api_key=API_KEY)
    try:
        agent.start()
        result["timing"]["miniagent_start_s"] = agent.startup_seconds
        # Imported here: the exporter must not be imported before the isolation check.
        from otel_dd_bridge import DatadogSpanExporter

        _wait_bucket_start()
        spans, cases = build_parity_spans()
        result["cases"] = {str(k): v for k, v in cases.items()}
        last_end = max(int(s.end_time or 0) for s in spans)
        t_sent = time.monotonic()

        exp_a = DatadogSpanExporter(agent_url=agent.url, api_version="v0.4", _environ={})
        result["export_a"] = exp_a.export(spans).name
        exp_a.shutdown()
        result["counters_a"] = exp_a.stats()

        try:
            exp_b = DatadogSpanExporter(mode="agentless", api_key=API_KEY,
                                        intake_url=intake_b.url, _environ={})
        except Exception as exc:  # noqa: BLE001 - recorded; the test reports it
            result["b_error"] = f"agentless mode unavailable: {exc!r}"
        else:
            result["export_b"] = exp_b.export(spans).name
            exp_b.force_flush()
            exp_b.shutdown()
            result["counters_b"] = exp_b.stats()

        # Sampled-out traces may be dropped by either side (that is compared in pytest).
        want_ids = {sid for sid, case in cases.items() if not case.startswith("sampled_out")}
        want_bucket = last_end - last_end % BUCKET_NS
        deadline = t_sent + timeout
        done_a = False
        while time.monotonic() < deadline:
            reqs_a = intake_a.requests()
            if want_ids <= _span_ids(reqs_a) and any(
                    b >= want_bucket for b in _stats_buckets(reqs_a)):
                done_a = True
                result["timing"]["a_complete_s"] = time.monotonic() - t_sent
                break
            time.sleep(0.25)
        # B is synchronous: its traces went out in export(), its stats at shutdown().
        done_b = not result["b_error"] and want_ids <= _span_ids(intake_b.requests())
        result["complete_a"], result["complete_b"] = done_a, done_b
        if not done_a:
            got = _span_ids(intake_a.requests())
            result["error"] = (
                f"mini-agent output incomplete after {timeout:.0f} s: {len(want_ids & got)} of "
                f"{len(want_ids)} spans, stats buckets {sorted(_stats_buckets(intake_a.requests()))}"
                f" (waiting for {want_bucket})")
    finally:
        agent.stop()
        intake_a.stop()
        intake_b.stop()
        result["miniagent_log_tail"] = agent.log_tail(8000)
        result["timing"]["total_s"] = time.monotonic() - t0
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.harness.parity_driver")
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--timeout", type=float, default=45.0,
                    help="seconds to wait for the mini-agent's traces and stats")
    args = ap.parse_args(argv)
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    try:
        result = run(outdir, args.timeout)
    except Exception as exc:  # noqa: BLE001 - reported to pytest as a test error
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    (outdir / "result.json").write_text(json.dumps(result, indent=1, default=_json_default))
    if result.get("error"):
        print(result["error"], file=sys.stderr)
        return 1
    return 0


def _json_default(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return repr(v)


if __name__ == "__main__":
    sys.exit(main())
