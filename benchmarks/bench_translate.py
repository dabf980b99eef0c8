"""Translate and encode cost per span on a realistic span set (not a test; the full suite is ``python -m benchmarks.run``).

    .venvs/dev/bin/python benchmarks/bench_translate.py [--spans 20000] [--rounds 5] [--json out.json]

Builds web-request traces with the real SDK (a SERVER span with ~11 attributes, a SQL CLIENT,
a Redis CLIENT and an HTTP CLIENT span; 2% of server spans fail with an exception event), then
times translate_spans and the v0.4 / v0.5 encoders in batches of 512, best of N rounds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.spanset import build_spans  # noqa: E402
from otel_dd_bridge.encoding import get_encoder  # noqa: E402
from otel_dd_bridge.encoding._pack import use_compiled  # noqa: E402
from otel_dd_bridge.translate import (  # noqa: E402
    TranslateOptions,
    _Cache,
    translate_spans_with_stats,
)


def _best(rounds: int, fn) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--json")
    args = ap.parse_args()
    spans = build_spans(args.spans)
    batches = [spans[i:i + args.batch] for i in range(0, len(spans), args.batch)]
    opts = TranslateOptions()
    cache = _Cache(256)

    def translate_all() -> list:
        return [translate_spans_with_stats(b, opts, _cache=cache).chunks for b in batches]

    chunked = translate_all()
    results = {"spans": len(spans), "translate_us_per_span": _best(args.rounds, translate_all)
               / len(spans) * 1e6}
    for version in ("v0.4", "v0.5"):
        enc = get_encoder(version)
        results[f"encode_{version}_us_per_span"] = _best(
            args.rounds, lambda enc=enc: [enc.encode(c) for c in chunked]) / len(spans) * 1e6
        results[f"bytes_per_span_{version}"] = sum(len(enc.encode(c)) for c in chunked) / len(spans)
        prev = use_compiled(False)  # the same encoder without the compiled fast path
        results[f"encode_{version}_pure_us_per_span"] = _best(
            args.rounds, lambda enc=enc: [enc.encode(c) for c in chunked]) / len(spans) * 1e6
        use_compiled(prev)
    try:  # OpenTelemetry's own OTLP encoder on the same spans, when installed, for the ratio
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    except ImportError:
        encode_spans = None
    if encode_spans is not None:
        otlp = _best(args.rounds, lambda: [encode_spans(b).SerializeToString() for b in batches])
        results["otlp_encode_us_per_span"] = otlp / len(spans) * 1e6
        ours = results["translate_us_per_span"] + results["encode_v0.4_us_per_span"]
        results["ratio_ours_v04_vs_otlp_encode"] = ours / results["otlp_encode_us_per_span"]
    print(f"{'measure':32} {'value':>10}")
    for k, v in results.items():
        print(f"{k:32} {v:10.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
