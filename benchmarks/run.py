"""The benchmark suite: our exporter against OTLP and ddtrace, measured in one run.

    .venvs/dev/bin/python -m benchmarks.run [--spans 20000] [--rounds 5] [--json bench.json]
        [--rps-seconds 5] [--rss-seconds 60] [--rss-rate 10000] [--skip rps,rss]

(also ``bash scripts/run.sh bench``). Builds the span set once with the real SDK
(:mod:`benchmarks.spanset`: SERVER span with 11 attributes + SQL, Redis and HTTP CLIENT spans,
2% errors with exception events), split in batches of 512 like ``BatchSpanProcessor``, then,
best of ``--rounds`` with the measures interleaved round by round:

1. our ``DatadogSpanExporter.export()`` per span to a local null sink over HTTP (v0.4, v0.5,
   agentless intake protobuf), translation alone, each encoder alone;
2. ``OTLPSpanExporter`` (http/protobuf) ``export()`` of the same spans to the same kind of sink,
   and OTLP encoding alone;
3. ddtrace's Cython ``MsgpackEncoderV04`` on equivalent Datadog spans, in ddtrace's venv
   (``$OTEL_DD_BRIDGE_DDTRACE_VENV``, default ``.venvs/ddtrace``) as a subprocess;
4. bytes per span on the wire for each format;
5. requests/second of a small Flask app under waitress with a local load generator:
   untraced, ours, OTLP (both behind ``BatchSpanProcessor``);
6. peak RSS exporting ``--rss-rate`` spans/s for ``--rss-seconds`` to an Agent that is down
   for the first half, then up;
7. items 1-2 again in a subprocess with ``OTEL_DD_BRIDGE_NO_EXTENSIONS=1`` (the pure-Python
   path, no compiled accelerator), reported under ``pure_python`` with its own same-run ratios.

The machine is shared: absolute times move from run to run, the ratios printed (ours vs each
peer, same run) are the result. The sink is a separate process that answers in one write with
``TCP_NODELAY``.
"""

from __future__ import annotations

import argparse
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
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def measure_cpu(spans: Sequence[Any], batch: int, rounds: int, sink: Sink) -> dict[str, Any]:
    """Items 1, 2, 4: per-span costs of export/translate/encode, ours and OTLP's; bytes/span."""
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
    chunked = [translate_spans_with_stats(b, opts, _cache=cache).chunks for b in batches]
    encoders = {"v0.4": get_encoder("v0.4"), "v0.5": get_encoder("v0.5"),
                "intake": IntakeEncoder()}

    def export_all(exp: Any) -> Callable[[], None]:
        def run() -> None:
            for b in batches:
                if exp.export(b) is not SpanExportResult.SUCCESS:
                    raise RuntimeError(f"{exp!r}: export failed")
        return run

    fns: dict[str, Callable[[], Any]] = {
        "translate": lambda: [translate_spans_with_stats(b, opts, _cache=cache) for b in batches],
        "otlp_encode": lambda: [encode_spans(b).SerializeToString() for b in batches],
        "otlp_export": export_all(otlp),
    }
    for name, enc in encoders.items():
        fns[f"encode_{name}"] = lambda enc=enc: [enc.encode(c) for c in chunked]
        fns[f"export_{name}"] = export_all(exporters[name])
    best = _best(rounds, fns)
    out: dict[str, Any] = {f"{k}_us_per_span": v / n * 1e6 for k, v in best.items()}
    for name, enc in encoders.items():
        out[f"bytes_per_span_{name}"] = sum(len(enc.encode(c)) for c in chunked) / n
    out["bytes_per_span_otlp"] = sum(len(encode_spans(b).SerializeToString())
                                     for b in batches) / n
    for exp in exporters.values():
        stats = exp.stats()
        if any(k.startswith("dropped") and v for k, v in stats.items()):
            raise RuntimeError(f"spans dropped during the benchmark: {stats}")
        exp.shutdown()
    otlp.shutdown()
    out["_v04_payload"] = json.dumps(
        [[[_span_map(s) for s in c.spans] for c in chunks] for chunks in chunked]).encode()
    return out


def _span_map(s: Any) -> dict[str, Any]:
    return {"trace_id": s.trace_id, "span_id": s.span_id, "parent_id": s.parent_id,
            "service": s.service, "name": s.name, "resource": s.resource, "type": s.type,
            "start": s.start, "duration": s.duration, "error": s.error, "meta": s.meta,
            "metrics": s.metrics}


def measure_ddtrace(payload: bytes, rounds: int) -> dict[str, Any]:
    """Item 3: ddtrace's encoder in its own venv."""
    venv = Path(os.environ.get("OTEL_DD_BRIDGE_DDTRACE_VENV", REPO / ".venvs" / "ddtrace"))
    py = venv / "bin" / "python"
    if not py.exists():
        raise RuntimeError(f"ddtrace venv not found at {venv} (bash scripts/run.sh test makes it)")
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        f.write(payload)
    try:
        res = subprocess.run([str(py), str(REPO / "benchmarks" / "ddtrace_encode.py"), f.name,
                              str(rounds)], capture_output=True, text=True, timeout=600)
    finally:
        os.unlink(f.name)
    if res.returncode:
        raise RuntimeError(f"ddtrace encoder benchmark failed: {res.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


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
                        str(batch), "--rounds", str(rounds), "--skip", "ddtrace,rps,rss,pure",
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
    ap.add_argument("--skip", default="", help="comma list of: ddtrace, rps, rss, pure")
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
        cpu = measure_cpu(spans, args.batch, args.rounds, sink)
        payload = cpu.pop("_v04_payload")
        results.update(cpu)
        if "ddtrace" not in skip:
            results["ddtrace"] = measure_ddtrace(payload, args.rounds)
        if "rps" not in skip:
            results.update(measure_rps(args.rps_seconds, args.rps_connections, sink,
                                       args.rps_rounds))
    finally:
        sink.close()
    if "rss" not in skip:
        results["rss"] = measure_rss(args.rss_seconds, args.rss_rate)
    if "pure" not in skip:
        results["pure_python"] = measure_pure(args.spans, args.batch, args.rounds)
    results["ratios"] = ratios(results)
    results["wall_seconds"] = time.monotonic() - t0
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
