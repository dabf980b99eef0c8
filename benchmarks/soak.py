"""Soak test (not in CI): minutes at a steady span rate while the real test agent is restarted.

    .venvs/dev/bin/python -m benchmarks.soak --minutes 5 --rate 2000 --restart-every 60

A TracerProvider + BatchSpanProcessor + DatadogSpanExporter send ``--rate`` spans/s to a
ddapm-test-agent (tests/harness/testagent.py); every ``--restart-every`` seconds the agent is
killed (SIGKILL), kept down ``--downtime`` seconds and started again on the same port. Each
``--report-every`` seconds one line: spans sent, received by the agent (since its last restart
and in total), exported/retried/dropped by reason from ``exporter.stats()``, and the RSS of this
process. At the end: totals, and ``unaccounted = sent - exported - dropped - still queued``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402

from otel_dd_bridge import DatadogSpanExporter  # noqa: E402
from tests.harness.testagent import TestAgent  # noqa: E402


def _rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--rate", type=int, default=1000, help="spans per second")
    ap.add_argument("--restart-every", type=float, default=45.0)
    ap.add_argument("--downtime", type=float, default=3.0)
    ap.add_argument("--report-every", type=float, default=10.0)
    ap.add_argument("--retry-timeout", type=float, default=10.0)
    args = ap.parse_args()

    agent = TestAgent().start()
    exp = DatadogSpanExporter(agent_url=agent.url, retry_timeout=args.retry_timeout, _environ={})
    provider = TracerProvider(resource=Resource({"service.name": "soak"}), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exp))
    tracer = provider.get_tracer("soak")
    received_before = 0  # spans the agent had received before its restarts (lost with it)
    sent = 0
    restarter: threading.Thread | None = None
    t0 = time.monotonic()
    end = t0 + args.minutes * 60
    next_restart = t0 + args.restart_every
    next_report = t0 + args.report_every
    print("t_s  sent  agent_total  exported  retried  dropped(by reason)  rss_mib", flush=True)
    try:
        while time.monotonic() < end:
            tick = time.monotonic()
            for _ in range(max(1, args.rate // 10)):  # 100 ms slices
                with tracer.start_as_current_span("soak-op") as sp:
                    sp.set_attribute("i", sent)
                sent += 1
            now = time.monotonic()
            if now >= next_restart and (restarter is None or not restarter.is_alive()):
                received_before += sum(len(t) for t in agent.traces())
                agent.kill()  # spans keep flowing while it is down

                def _back(port: int = agent.port) -> None:
                    time.sleep(args.downtime)
                    agent.start(port=port)

                restarter = threading.Thread(target=_back)
                restarter.start()
                next_restart = now + args.restart_every
            if now >= next_report and not (restarter and restarter.is_alive()):
                s = exp.stats()
                drops = {k[8:]: v for k, v in s.items() if k.startswith("dropped.") and v}
                got = received_before + sum(len(t) for t in agent.traces())
                print(f"{now - t0:5.0f} {sent:8d} {got:8d} {s['exported']:8d} {s['retried']:7d} "
                      f"{drops} {_rss_mib():7.1f}", flush=True)
                next_report = now + args.report_every
            time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
        if restarter is not None:
            restarter.join()
        provider.force_flush(60_000)
        time.sleep(0.5)
        s = exp.stats()
        got = received_before + sum(len(t) for t in agent.traces())
        dropped = sum(v for k, v in s.items() if k.startswith("dropped."))
        print(f"final: sent={sent} received_by_agent={got} exported={s['exported']} "
              f"dropped={dropped} {s} unaccounted_by_exporter={sent - s['received']} "
              f"(BatchSpanProcessor queue drops) rss_mib={_rss_mib():.1f}")
    finally:
        provider.shutdown()
        agent.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
