"""Agentless intake encoding cost: µs per span and bytes per span (gzip protobuf).

    .venvs/dev/bin/python scripts/bench_intake.py [N_SPANS]

Same workload as benchmarks/bench_translate.py (Flask-like requests: SERVER + SQL + Redis +
HTTP CLIENT spans, 2% errors; batches of 512; best of 5), translated once, then encoded as
the intake's AgentPayload and gzipped at the level the delivery uses (and at level 6 for
comparison). The v0.4 msgpack encoder of the same chunks is printed for the ratio.
"""

from __future__ import annotations

import gzip
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.spanset import build_spans  # noqa: E402
from otel_dd_bridge.encoding import V04Encoder  # noqa: E402
from otel_dd_bridge.encoding.intake_protobuf import IntakeEncoder  # noqa: E402
from otel_dd_bridge.intake import GZIP_LEVEL  # noqa: E402
from otel_dd_bridge.translate import TranslateOptions, translate_spans  # noqa: E402


def _best(fn, repeat=5):
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    n_spans = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    spans = build_spans(n_spans)
    opts = TranslateOptions()
    batches = [translate_spans(spans[i:i + 512], opts) for i in range(0, len(spans), 512)]
    n = sum(len(c.spans) for b in batches for c in b)
    enc, v04 = IntakeEncoder(runtime_id="bench"), V04Encoder()
    t_enc, raws = _best(lambda: [enc.encode(b) for b in batches])
    print(f"{n} spans in {len(batches)} batches")
    print(f"intake protobuf encode   {t_enc / n * 1e6:6.2f} us/span  "
          f"{sum(map(len, raws)) / n:7.1f} B/span uncompressed")
    for level in sorted({GZIP_LEVEL, 6}):
        t_gz, gz = _best(lambda lv=level: [gzip.compress(r, compresslevel=lv) for r in raws])
        used = " (used)" if level == GZIP_LEVEL else ""
        print(f"  + gzip level {level}{used:7}  {t_gz / n * 1e6:6.2f} us/span  "
              f"{sum(map(len, gz)) / n:7.1f} B/span on the wire")
    t4, b4 = _best(lambda: [v04.encode(b) for b in batches])
    print(f"v0.4 msgpack encode      {t4 / n * 1e6:6.2f} us/span  {sum(map(len, b4)) / n:7.1f} B/span")


if __name__ == "__main__":
    main()
