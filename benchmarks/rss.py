"""Memory under an outage: export RATE spans/s for SECONDS to an Agent that is down, then up.

    python -m benchmarks.rss --seconds 60 --rate 10000

The process records web-request traces (four spans each, as in the span set) at RATE spans/s
through the SDK's ``BatchSpanProcessor`` (defaults: queue 2048, batches of 512) and our
``DatadogSpanExporter``. For the first half nothing listens on the Agent's port (connection
refused, every export retries until ``retry_timeout`` and drops); at half time a null sink
starts on that port. RSS is sampled every 0.25 s from ``/proc/self/statm``. Prints one JSON
object: RSS at start, peak while down, peak while up, final, spans produced and the
exporter's counters. The bound it shows: the SDK queue (2048 spans) + one batch in flight +
one encoded payload (<= ``max_payload_size``), whatever the Agent does.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

from otel_dd_bridge import DatadogSpanExporter

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 1e6


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rate", type=int, default=10000, help="spans per second")
    args = ap.parse_args()
    port = free_port()
    exporter = DatadogSpanExporter(agent_url=f"http://127.0.0.1:{port}", _environ={},
                                   retry_timeout=2.0)
    provider = TracerProvider(resource=Resource.create({"service.name": "bench-rss"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("bench.rss")
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sampler() -> None:
        while not done.is_set():
            samples.append((time.monotonic(), rss_mb()))
            done.wait(0.25)

    start_rss = rss_mb()
    threading.Thread(target=sampler, daemon=True).start()
    t0 = time.monotonic()
    half = t0 + args.seconds / 2
    end = t0 + args.seconds
    sink: subprocess.Popen[bytes] | None = None
    tmp = tempfile.mkdtemp()
    produced = 0
    per_tick = max(1, args.rate // 100 // 4)  # requests per 10 ms tick
    next_tick = t0
    while time.monotonic() < end:
        if sink is None and time.monotonic() >= half:
            sink = subprocess.Popen([sys.executable, "-m", "benchmarks.nullsink",
                                     str(Path(tmp) / "port"), "--port", str(port)],
                                    cwd=str(Path(__file__).resolve().parents[1]))
            up_at = time.monotonic()
        for _ in range(per_tick):
            with tracer.start_as_current_span("GET /users/<id>", kind=SpanKind.SERVER,
                                              attributes={"http.request.method": "GET",
                                                          "http.route": "/users/<id>",
                                                          "http.response.status_code": 200}):
                for name, system in (("SELECT users", "postgresql"), ("GET", "redis")):
                    with tracer.start_as_current_span(name, kind=SpanKind.CLIENT,
                                                      attributes={"db.system": system}):
                        pass
                with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT,
                                                  attributes={"http.request.method": "GET"}):
                    pass
            produced += 4
        next_tick += 0.01
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    provider.force_flush(10_000)
    done.set()
    provider.shutdown()
    if sink is not None:
        sink.kill()
        sink.wait()
    elapsed = time.monotonic() - t0
    down = [r for t, r in samples if t < half]
    up = [r for t, r in samples if t >= half]
    print(json.dumps({
        "seconds": args.seconds, "target_rate": args.rate, "achieved_rate": produced / elapsed,
        "spans_produced": produced, "rss_start_mb": start_rss,
        "rss_peak_down_mb": max(down, default=start_rss),
        "rss_peak_up_mb": max(up, default=start_rss), "rss_final_mb": rss_mb(),
        "rss_peak_mb": max([r for _, r in samples], default=start_rss),
        "agent_up_after_s": (up_at - t0) if sink is not None else None,
        "exporter": exporter.stats(),
    }))


if __name__ == "__main__":
    main()
