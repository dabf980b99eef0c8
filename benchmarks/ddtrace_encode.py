"""ddtrace's own Cython v0.4 encoder on Datadog spans equivalent to ours (run in ddtrace's venv).

    .venvs/ddtrace/bin/python benchmarks/ddtrace_encode.py SPANS.json ROUNDS
    .venvs/ddtrace/bin/python benchmarks/ddtrace_encode.py SPANS.json --serve

``SPANS.json`` is a list of batches, each a list of chunks, each a list of span maps as our
v0.4 encoder writes them (the benchmark's translated span set). Each span becomes a ddtrace
``Span`` with the same ids, names, times, error, meta (``set_tags``) and metrics
(``set_metrics``), built once; then ``MsgpackEncoderV04.put()`` of every chunk + ``encode()``
per batch is timed, best of ROUNDS. Prints one JSON object: ``encode_us_per_span``,
``bytes_per_span``, ``ddtrace_version``. Encoding only: no translation (ours includes it).

``--serve``: prints ``{"ready": spans}`` once the spans are built, then times one round per
line read from stdin and prints ``{"seconds": s, "bytes": b}`` for it, until stdin closes.
The suite uses it to interleave ddtrace's rounds with its own, so that both sides of the ratio
see the same machine (a shared machine's speed drifts by tens of percent within a minute).
"""

from __future__ import annotations

import gc
import json
import sys
import time

import ddtrace
from ddtrace.internal._encoding import MsgpackEncoderV04
from ddtrace.trace import Span


def main() -> None:
    with open(sys.argv[1], "rb") as f:
        batches = json.loads(f.read())
    rounds = 0 if sys.argv[2] == "--serve" else int(sys.argv[2])
    built = []
    n = 0
    for batch in batches:
        chunks = []
        for chunk in batch:
            spans = []
            for d in chunk:
                s = Span(d["name"], service=d["service"], resource=d["resource"],
                         span_type=d["type"] or None, trace_id=d["trace_id"],
                         span_id=d["span_id"], parent_id=d["parent_id"] or None,
                         start=d["start"] / 1e9)
                s.set_tags(d["meta"])
                s.set_metrics(d["metrics"])
                s.error = d["error"]
                s.duration_ns = d["duration"]
                spans.append(s)
                n += 1
            chunks.append(spans)
        built.append(chunks)
    enc = MsgpackEncoderV04(64 << 20, 64 << 20)
    gc.collect()  # as the suite does after building its span set: no full collection of the
    gc.freeze()   # freshly built spans lands in a measured round

    def one_round() -> tuple[float, int]:
        t0 = time.perf_counter()
        size = 0
        for chunks in built:
            for spans in chunks:
                enc.put(spans)
            for payload, _count in enc.encode():
                size += len(payload)
        return time.perf_counter() - t0, size

    if sys.argv[2] == "--serve":
        print(json.dumps({"ready": n, "ddtrace_version": ddtrace.__version__}), flush=True)
        for _line in sys.stdin:
            seconds, size = one_round()
            print(json.dumps({"seconds": seconds, "bytes": size}), flush=True)
        return
    best = float("inf")
    size = 0
    for _ in range(rounds):
        seconds, size = one_round()
        best = min(best, seconds)
    print(json.dumps({"encode_us_per_span": best / n * 1e6, "bytes_per_span": size / n,
                      "spans": n, "ddtrace_version": ddtrace.__version__}))


if __name__ == "__main__":
    main()
