"""The benchmark suite: our exporter against OTLP and ddtrace, measured in one run.

    .venvs/dev/bin/python -m benchmarks.run [--spans 20000] [--rounds 5] [--json bench.json]
        [--rps-seconds 5] [--rss-seconds 60] [--rss-rate 10000] [--skip rps,rss]

(also ``bash scripts/run.sh bench``). Builds the span set once with the real SDK
(:mod:`benchmarks.spanset`: SERVER span with 11 attributes + SQL, Redis and HTTP CLIENT spans,
2% errors with exception events), split in batches of 512 like ``BatchSpanProcessor``, then,
best of ``--rounds`` with the measures interleaved round by round:

1. our ``DatadogSpanExporter.export()`` per span to a local null sink over HTTP (v0.4, v0.5,
   agentless intake protobuf), translation alone, each encoder alone, and the pipeline of
   ``export()`` without the send (``pipeline_v0.4``: each batch translated, encoded to v0.4
   and dropped, as the exporter does; translation alone keeps all results of a round alive,
   which makes the cyclic GC walk them);
2. ``OTLPSpanExporter`` (http/protobuf) ``export()`` of the same spans to the same kind of sink,
   and OTLP encoding alone;
3. ddtrace's Cython ``MsgpackEncoderV04`` on equivalent Datadog spans, in ddtrace's venv
   (``$OTEL_DD_BRIDGE_DDTRACE_VENV``, default ``.venvs/ddtrace``) as a subprocess that runs
   one round of its own each time this process runs one of items 1-2 (interleaved: both sides
   of the ratio see the same machine);
4. bytes per span on the wire for each format;
5. requests/second of a small Flask app under waitress with a local load generator:
   untraced, ours, OTLP (both behind ``BatchSpanProcessor``);
6. peak RSS exporting ``--rss-rate`` spans/s for ``--rss-seconds`` to an Agent that is down
   for the first half, then up;
7. items 1-2 again in a subprocess with ``OTEL_DD_BRIDGE_NO_EXTENSIONS=1`` (the pure-Python
   path, no compiled accelerator), reported under ``pure_python`` with its own same-run ratios;
8. instructions per span counted by valgrind for our pipeline (compiled and pure), our whole
   ``export()`` (compiled, to the null sink) and for
   ddtrace's encoder (:mod:`benchmarks.instructions`, ``--instr-spans``): repeatable where the
   wall-clock ratios are not.

The machine is shared: absolute times move from run to run, the ratios printed (ours vs each
peer, same run) are the result. The sink is a separate process that answers in one write with
``TCP_NODELAY``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.spanset import build_spans

REPO = Path(__file__).resolve().parents[1]


class Sink:
    """The null sink in its own process."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp()
        pf = Path(self._dir) / "port"
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.nullsink", str(pf)],
                                     cwd=str(REPO))
        self.port = int(_wait_file(pf, self.proc))

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _wait_file(path: Path, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text()
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        time.sleep(0.02)
    raise RuntimeError(f"{proc.args!r} did not start")


def _best(rounds: int, fns: dict[str, Callable[[], Any]]) -> dict[str, float]:
    """Best time of each function over ``rounds`` rounds, the functions interleaved. A function
    that returns a float returns its own measured seconds (the ddtrace subprocess's round)."""
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            r = fn()
            dt = r if type(r) is float else time.perf_counter() - t0
            best[k] = min(best[k], dt)
    return best


def measure_cpu(
    spans: Sequence[Any], batch: int, rounds: int, sink: Sink, ddtrace: bool = False,
) -> dict[str, Any]:
    """Items 1, 2, 4 (and 3, interleaved, when ``ddtrace``): per-span costs of
    export/translate/encode, ours, OTLP's (and ddtrace's encoder); bytes/span."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    from otel_dd_bridge import DatadogSpanExporter
    from otel_dd_bridge.encoding import get_encoder
    from otel_dd_bridge.encoding.intake_protobuf import IntakeEncoder
    from otel_dd_bridge.translate import TranslateOptions, _Cache, translate_spans_with_stats

    batches = [list(spans[i : i + batch]) for i in range(0, len(spans), batch)]
    n = len(spans)
    url = f"http://127.0.0.1:{sink.port}"
    exporters = {
        "v0.4": DatadogSpanExporter(agent_url=url, api_version="v0.4", _environ={}),
        "v0.5": DatadogSpanExporter(agent_url=url, api_version="v0.5", _environ={}),
        "intake": DatadogSpanExporter(mode="agentless", api_key="bench-not-a-key",
                                      intake_url=url, compute_stats=False, _environ={}),
    }
    otlp = OTLPSpanExporter(endpoint=f"{url}/v1/traces")
    opts = TranslateOptions()
    cache = _Cache(256)
    encoders = {"v0.4": get_encoder("v0.4"), "v0.5": get_encoder("v0.5"),
                "intake": IntakeEncoder()}
    v04 = get_encoder("v0.4")
    # Each encoder gets its own translation: reading `meta` (the intake encoder does) merges
    # a span's shared tail, and the exporter encodes every batch fresh from translation.
    chunked_by = {name: [translate_spans_with_stats(b, opts, _cache=cache).chunks
                         for b in batches] for name in encoders}
    ref = [translate_spans_with_stats(b, opts, _cache=cache).chunks for b in batches]
    v04_payload = json.dumps([[[_span_map(s) for s in c.spans] for c in chunks]
                              for chunks in ref]).encode()
    dd = DdtraceRounds(v04_payload) if ddtrace else None

    def export_all(exp: Any) -> Callable[[], None]:
        def run() -> None:
            for b in batches:
                if exp.export(b) is not SpanExportResult.SUCCESS:
                    raise RuntimeError(f"{exp!r}: export failed")
        return run

    fns: dict[str, Callable[[], Any]] = {
        "translate": lambda: [translate_spans_with_stats(b, opts, _cache=cache) for b in batches],
        # what export() does before the send: each batch translated and encoded, then dropped
        # (the two measures above keep every batch's result alive until the round ends)
        "pipeline_v0.4": lambda: [len(v04.encode(translate_spans_with_stats(
            b, opts, _cache=cache).chunks)) for b in batches],
        "otlp_encode": lambda: [encode_spans(b).SerializeToString() for b in batches],
        "otlp_export": export_all(otlp),
    }
    for name, enc in encoders.items():
        fns[f"encode_{name}"] = lambda enc=enc, ch=chunked_by[name]: [enc.encode(c) for c in ch]
        fns[f"export_{name}"] = export_all(exporters[name])
    if dd is not None:
        fns["ddtrace_encode"] = dd.one_round
    # The span set and the encoders' translations were just built: left in the collector's
    # young generations, they would trigger full collections in whichever rounds happen to
    # allocate next (a cost of this harness, not of any exporter; ddtrace_encode.py does the same).
    gc.collect()
    gc.freeze()
    try:
        best = _best(rounds, fns)
    finally:
        gc.unfreeze()
        if dd is not None:
            dd.close()
    out: dict[str, Any] = {f"{k}_us_per_span": v / n * 1e6 for k, v in best.items()
                           if k != "ddtrace_encode"}
    if dd is not None:
        out["_ddtrace"] = {"encode_us_per_span": best["ddtrace_encode"] / dd.spans * 1e6,
                           "bytes_per_span": dd.bytes / dd.spans, "spans": dd.spans,
                           "ddtrace_version": dd.version, "interleaved": True}
    for name, enc in encoders.items():
        out[f"bytes_per_span_{name}"] = sum(len(enc.encode(c)) for c in ref) / n
    out["bytes_per_span_otlp"] = sum(len(encode_spans(b).SerializeToString())
                                     for b in batches) / n
    for exp in exporters.values():
        stats = exp.stats()
        if any(k.startswith("dropped") and v for k, v in stats.items()):
            raise RuntimeError(f"spans dropped during the benchmark: {stats}")
        exp.shutdown()
    otlp.shutdown()
    return out


def _span_map(s: Any) -> dict[str, Any]:
    return {"trace_id": s.trace_id, "span_id": s.span_id, "parent_id": s.parent_id,
            "service": s.service, "name": s.name, "resource": s.resource, "type": s.type,
            "start": s.start, "duration": s.duration, "error": s.error, "meta": s.meta,
            "metrics": s.metrics}


class DdtraceRounds:
    """Item 3: ddtrace's encoder in its own venv, one round per :meth:`one_round` call."""

    def __init__(self, payload: bytes) -> None:
        venv = Path(os.environ.get("OTEL_DD_BRIDGE_DDTRACE_VENV", REPO / ".venvs" / "ddtrace"))
        py = venv / "bin" / "python"
        if not py.exists():
            raise RuntimeError(
                f"ddtrace venv not found at {venv} (bash scripts/run.sh test makes it)")
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            f.write(payload)
        self._file = f.name
        self.proc = subprocess.Popen(
            [str(py), str(REPO / "benchmarks" / "ddtrace_encode.py"), f.name, "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        hello = self._read()
        self.spans: int = hello["ready"]
        self.version: str = hello["ddtrace_version"]
        self.bytes = 0

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"ddtrace encoder benchmark exited with {self.proc.wait()}")
        out: dict[str, Any] = json.loads(line)
        return out

    def one_round(self) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write("round\n")
        self.proc.stdin.flush()
        r = self._read()
        self.bytes = r["bytes"]
        return float(r["seconds"])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.unlink(self._file)


def measure_rps(seconds: float, connections: int, sink: Sink, rounds: int) -> dict[str, Any]:
    """Item 5: requests/second of the Flask app, untraced / ours / OTLP."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for mode in ("none", "ours", "otlp"):
            d = tempfile.mkdtemp()
            pf = Path(d) / "port"
            srv = subprocess.Popen([sys.executable, "-m", "benchmarks.webapp", "serve", mode,
                                    str(sink.port), str(pf)], cwd=str(REPO))
            try:
                port = _wait_file(pf, srv)
                subprocess.run([sys.executable, "-m", "benchmarks.webapp", "load", port, "0.3",
                                "2"], cwd=str(REPO), check=True, capture_output=True)  # warm up
                res = subprocess.run([sys.executable, "-m", "benchmarks.webapp", "load", port,
                                      str(seconds), str(connections)], cwd=str(REPO),
                                     check=True, capture_output=True, text=True)
                r = json.loads(res.stdout)
                if r["errors"] or not r["requests"]:
                    raise RuntimeError(f"load generator errors in mode {mode}: {r}")
                best[mode] = max(best.get(mode, 0.0), r["rps"])
            finally:
                srv.kill()
                srv.wait()
    return {f"rps_{k}": v for k, v in best.items()}


def measure_rss(seconds: float, rate: int) -> dict[str, Any]:
    """Item 6: RSS while the Agent is down then up."""
    res = subprocess.run([sys.executable, "-m", "benchmarks.rss", "--seconds", str(seconds),
                          "--rate", str(rate)], cwd=str(REPO), check=True, capture_output=True,
                         text=True, timeout=seconds * 3 + 120)
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def measure_pure(spans: int, batch: int, rounds: int) -> dict[str, Any]:
    """Item 7: the CPU measures of a pure-Python run (``OTEL_DD_BRIDGE_NO_EXTENSIONS=1``)."""
    env = dict(os.environ, OTEL_DD_BRIDGE_NO_EXTENSIONS="1")
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "pure.json"
        subprocess.run([sys.executable, "-m", "benchmarks.run", "--spans", str(spans), "--batch",
                        str(batch), "--rounds", str(rounds), "--skip", "ddtrace,rps,rss,pure,instructions",
                        "--json", str(out)], cwd=str(REPO), env=env, check=True,
                       capture_output=True, timeout=1800)
        r: dict[str, Any] = json.loads(out.read_text())
    if any(r["compiled"].values()):
        raise RuntimeError(f"the pure-Python run loaded compiled modules: {r['compiled']}")
    keep = {k: v for k, v in r.items() if k.endswith("_us_per_span")}
    keep["ratios"] = r["ratios"]
    return keep


def ratios(r: dict[str, Any]) -> dict[str, float]:
    """Ours vs each peer, from measures of the same run."""
    out: dict[str, float] = {}
    otlp = r.get("otlp_export_us_per_span")
    for fmt in ("v0.4", "v0.5", "intake"):
        ours = r.get(f"export_{fmt}_us_per_span")
        if ours and otlp:
            out[f"export_{fmt}_vs_otlp_export"] = ours / otlp
    dd = r.get("ddtrace", {}).get("encode_us_per_span")
    if dd:
        for fmt in ("v0.4", "v0.5", "intake"):
            if r.get(f"export_{fmt}_us_per_span"):
                out[f"export_{fmt}_vs_ddtrace_encode"] = r[f"export_{fmt}_us_per_span"] / dd
        te = r["translate_us_per_span"] + r["encode_v0.4_us_per_span"]
        out["translate+encode_v0.4_vs_ddtrace_encode"] = te / dd
        if r.get("pipeline_v0.4_us_per_span"):
            out["pipeline_v0.4_vs_ddtrace_encode"] = r["pipeline_v0.4_us_per_span"] / dd
    if r.get("otlp_encode_us_per_span"):
        te = r["translate_us_per_span"] + r["encode_v0.4_us_per_span"]
        out["translate+encode_v0.4_vs_otlp_encode"] = te / r["otlp_encode_us_per_span"]
    if r.get("rps_otlp") and r.get("rps_ours"):
        out["rps_ours_vs_otlp"] = r["rps_ours"] / r["rps_otlp"]
        out["rps_ours_vs_untraced"] = r["rps_ours"] / r["rps_none"]
        out["rps_otlp_vs_untraced"] = r["rps_otlp"] / r["rps_none"]
    return out


def print_table(r: dict[str, Any]) -> None:
    rows = [(k, v) for k, v in r.items() if isinstance(v, (int, float)) and k != "ratios"]
    for k, v in r.get("ddtrace", {}).items():
        if isinstance(v, (int, float)):
            rows.append((f"ddtrace.{k}", v))
    for k, v in r.get("rss", {}).items():
        if isinstance(v, (int, float)):
            rows.append((f"rss.{k}", v))
    for k, v in r.get("instructions", {}).items():
        if isinstance(v, (int, float)):
            rows.append((f"instructions.{k}", v))
    for k, v in r.get("pure_python", {}).items():
        if isinstance(v, (int, float)):
            rows.append((f"pure_python.{k}", v))
    print("compiled modules: " + (", ".join(k for k, v in r.get("compiled", {}).items() if v)
                                  or "none (pure Python)"))
    print(f"{'measure':44} {'value':>12}")
    for k, v in rows:
        print(f"{k:44} {v:12.2f}")
    print(f"\n{'ratio (same run)':44} {'value':>12}")
    for k, v in r.get("ratios", {}).items():
        print(f"{k:44} {v:12.3f}")
    for k, v in r.get("pure_python", {}).get("ratios", {}).items():
        print(f"{'pure_python.' + k:44} {v:12.3f}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spans", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rps-seconds", type=float, default=5.0)
    ap.add_argument("--rps-connections", type=int, default=4)
    ap.add_argument("--rps-rounds", type=int, default=2)
    ap.add_argument("--rss-seconds", type=float, default=60.0)
    ap.add_argument("--rss-rate", type=int, default=10000)
    ap.add_argument("--instr-spans", type=int, default=2048)
    ap.add_argument("--skip", default="",
                    help="comma list of: ddtrace, rps, rss, pure, instructions")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    t0 = time.monotonic()
    spans = build_spans(args.spans)
    from otel_dd_bridge._accel import compiled_status

    results: dict[str, Any] = {"spans": len(spans), "batch": args.batch, "rounds": args.rounds,
                               "python": sys.version.split()[0],
                               "compiled": compiled_status()}
    sink = Sink()
    try:
        cpu = measure_cpu(spans, args.batch, args.rounds, sink, ddtrace="ddtrace" not in skip)
        if "_ddtrace" in cpu:
            results["ddtrace"] = cpu.pop("_ddtrace")
        results.update(cpu)
        if "rps" not in skip:
            results.update(measure_rps(args.rps_seconds, args.rps_connections, sink,
                                       args.rps_rounds))
    finally:
        sink.close()
    if "rss" not in skip:
        results["rss"] = measure_rss(args.rss_seconds, args.rss_rate)
    if "pure" not in skip:
        results["pure_python"] = measure_pure(args.spans, args.batch, args.rounds)
    if "instructions" not in skip:
        from benchmarks.instructions import measure as measure_instructions

        results["instructions"] = measure_instructions(
            args.instr_spans, pure="pure" not in skip, ddtrace="ddtrace" not in skip)
    results["ratios"] = ratios(results)
    results["wall_seconds"] = time.monotonic() - t0
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
