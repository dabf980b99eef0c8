"""Instructions per span, counted by valgrind (callgrind): ours vs ddtrace's encoder, repeatable.

    .venvs/dev/bin/python -m benchmarks.instructions [--spans 2048] [--json out.json]

Wall-clock ratios on a shared machine move by tens of percent between runs; an instruction
count does not (the same binary, inputs and environment give the same count). It is not time
(a cache miss or an allocation costs more than an add), so the suite reports both.

Each side runs twice under ``valgrind --tool=callgrind`` on the same translated span set, with
one warm-up round and then 0 or ``ROUNDS`` (2) measured rounds; the difference divided by
``ROUNDS x spans`` is the per-span count:

* ours: the exporter's pipeline without the send (each batch of 512 translated and encoded to
  v0.4, then dropped), compiled or, with ``OTEL_DD_BRIDGE_NO_EXTENSIONS=1``, pure Python;
* ours, the whole ``DatadogSpanExporter.export()`` (compiled): translate, encode and the HTTP
  request (httpx) to the null sink (``benchmarks/nullsink.py``, a process of its own that
  valgrind does not count; it reads the body and answers 200 at once);
* ddtrace: ``benchmarks/ddtrace_encode.py`` (its Cython ``MsgpackEncoderV04``, encoding only)
  in ddtrace's venv (``$OTEL_DD_BRIDGE_DDTRACE_VENV``).

Span ids, times and string hashing (``PYTHONHASHSEED=0``) are fixed, so a count repeats
exactly for the same code. The two runs of a side go in parallel (2 cores); ``valgrind``
must be installed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ROUNDS = 2
_COLLECTED = re.compile(r"Collected : (\d+)")


def _child(spans_n: int, rounds: int, payload_out: str | None, sink: str | None = None) -> None:
    """Run in the measured process: build, warm up, then ``rounds`` pipeline rounds (or, with
    ``sink``, ``rounds`` rounds of ``DatadogSpanExporter.export()`` to the null sink there)."""
    sys.path.insert(0, str(REPO))
    from benchmarks.run import _span_map
    from benchmarks.spanset import SeededIds, build_spans
    from otel_dd_bridge import DatadogSpanExporter
    from otel_dd_bridge.encoding import get_encoder
    from otel_dd_bridge.translate import TranslateOptions, _Cache, translate_spans_with_stats

    spans = build_spans(spans_n, id_generator=SeededIds(7), fixed_time=True)
    batches = [spans[i:i + 512] for i in range(0, len(spans), 512)]
    opts, cache, enc = TranslateOptions(), _Cache(256), get_encoder("v0.4")
    exp = DatadogSpanExporter(agent_url=sink, api_version="v0.4", _environ={}) if sink else None

    def one_round() -> None:
        for b in batches:
            if exp is not None:
                exp.export(b)
            else:
                enc.encode(translate_spans_with_stats(b, opts, _cache=cache).chunks)

    one_round()  # warms the caches (and the connection) up
    # The span set was just built: left in the collector's young generations, it would trigger
    # a full collection at a point that depends on the run (and that cost is the harness's).
    gc.collect()
    gc.freeze()
    for _ in range(rounds):
        one_round()
    if exp is not None:
        if exp.stats().get("exported") != (1 + rounds) * len(spans):
            raise RuntimeError(f"not every span was exported: {exp.stats()}")
        exp.shutdown()
    if payload_out:
        chunked = [translate_spans_with_stats(b, opts, _cache=cache).chunks for b in batches]
        Path(payload_out).write_text(json.dumps(
            [[[_span_map(s) for s in c.spans] for c in chunks] for chunks in chunked]))


def _count(cmd: list[str], env: dict[str, str] | None = None) -> int:
    # fixed string hashing and span ids (above): the same count in every run
    env = dict(os.environ if env is None else env, PYTHONHASHSEED="0")
    with tempfile.TemporaryDirectory() as d:
        res = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={d}/cg.out", *cmd],
            capture_output=True, text=True, env=env, cwd=str(REPO), timeout=1800)
    m = _COLLECTED.search(res.stderr)
    if res.returncode or not m:
        raise RuntimeError(f"{cmd!r} under callgrind failed: {res.stderr[-2000:]}")
    return int(m.group(1))


def _per_span(cmds: tuple[list[str], list[str]], spans: int,
              env: dict[str, str] | None = None) -> float:
    with ThreadPoolExecutor(2) as pool:
        base, more = pool.map(lambda c: _count(c, env), cmds)
    return (more - base) / (ROUNDS * spans)


def measure(spans: int, pure: bool = True, ddtrace: bool = True,
            export: bool = True) -> dict[str, Any]:
    if shutil.which("valgrind") is None:
        raise RuntimeError("valgrind is not installed (apt-get install valgrind)")
    me = [sys.executable, "-m", "benchmarks.instructions", "--child"]
    out: dict[str, Any] = {"spans": spans, "rounds": ROUNDS}
    with tempfile.TemporaryDirectory() as d:
        payload = f"{d}/spans.json"
        _child(spans, 0, payload)  # the span set ddtrace encodes (same ids, tags, metrics)
        out["ours_pipeline_v0.4_instr_per_span"] = _per_span(
            (me + [str(spans), "0"], me + [str(spans), str(ROUNDS)]), spans)
        if export:
            from benchmarks.run import Sink

            sink = Sink()
            try:
                url = [f"http://127.0.0.1:{sink.port}"]
                out["ours_export_v0.4_instr_per_span"] = _per_span(
                    (me + [str(spans), "0"] + url, me + [str(spans), str(ROUNDS)] + url), spans)
            finally:
                sink.close()
        if pure:
            env = dict(os.environ, OTEL_DD_BRIDGE_NO_EXTENSIONS="1")
            out["pure_python.ours_pipeline_v0.4_instr_per_span"] = _per_span(
                (me + [str(spans), "0"], me + [str(spans), str(ROUNDS)]), spans, env)
        if ddtrace:
            venv = Path(os.environ.get("OTEL_DD_BRIDGE_DDTRACE_VENV",
                                       REPO / ".venvs" / "ddtrace"))
            dd = [str(venv / "bin" / "python"), str(REPO / "benchmarks" / "ddtrace_encode.py"),
                  payload]
            # ddtrace_encode.py's first round is the warm-up here
            out["ddtrace_encode_instr_per_span"] = _per_span(
                (dd + ["1"], dd + [str(1 + ROUNDS)]), spans)
            out["ours_vs_ddtrace"] = (out["ours_pipeline_v0.4_instr_per_span"]
                                      / out["ddtrace_encode_instr_per_span"])
            if export:
                out["ours_export_vs_ddtrace"] = (out["ours_export_v0.4_instr_per_span"]
                                                 / out["ddtrace_encode_instr_per_span"])
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        _child(int(argv[1]), int(argv[2]), None, argv[3] if len(argv) > 3 else None)
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=2048)
    ap.add_argument("--skip", default="", help="comma list of: pure, ddtrace, export")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    skip = set(args.skip.split(","))
    r = measure(args.spans, pure="pure" not in skip, ddtrace="ddtrace" not in skip,
                export="export" not in skip)
    for k, v in r.items():
        print(f"{k:<52}{v:>12.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
