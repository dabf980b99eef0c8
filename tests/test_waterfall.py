"""The terminal waterfall: a checked-in snapshot plus properties that hold for any input."""

from __future__ import annotations

import os
from pathlib import Path

from otel_dd_bridge.model import DDSpan
from otel_dd_bridge.waterfall import format_duration, group_traces, render_waterfall

SNAPSHOT = Path(__file__).parent / "snapshots" / "waterfall_pipeline.txt"
S = 10**9
T0 = 1_796_205_600 * S


def _span(sid: int, parent: int, service: str, resource: str, start_s: float, dur_s: float,
          error: int = 0, meta: dict[str, str] | None = None, trace: int = 77) -> DDSpan:
    return DDSpan(trace_id=trace, span_id=sid, parent_id=parent, service=service, name="op",
                  resource=resource, type="", start=T0 + int(start_s * S),
                  duration=int(dur_s * S), error=error, meta=dict(meta or {}), metrics={})


def _pipeline() -> list[DDSpan]:
    return [
        _span(1, 0, "ci", "pipeline main 9fceb02", 0, 3 * 3600,
              meta={"_dd.p.tid": "6a1b2c3d00000000"}),
        _span(2, 1, "ci", "build", 0, 25 * 60),
        _span(3, 1, "ci", "test", 25 * 60, 40 * 60),
        _span(4, 3, "pytest", "tests/unit " + "x" * 60, 25 * 60, 0.25),
        _span(6, 1, "ci", "deploy production", 65 * 60, 115 * 60, error=1,
              meta={"error.type": "CanaryFailed", "error.msg": "error rate 4.2% > 1%"}),
        _span(5, 1, "ci", "image push", 65 * 60, 3),
        _span(9, 42, "orphan", "parent not in trace", 60, 60),
    ]


def test_snapshot() -> None:
    out = render_waterfall(group_traces(_pipeline()))
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(out)
    assert out == SNAPSHOT.read_text(), (
        "waterfall output changed; inspect it and rerun with UPDATE_SNAPSHOTS=1 if intended:\n"
        + out)


def test_fits_the_width_and_scales_bars_to_the_trace() -> None:
    for width in (80, 60, 120):
        out = render_waterfall(group_traces(_pipeline()), width=width)
        assert max(len(line) for line in out.splitlines()) <= width
    lines = render_waterfall(group_traces(_pipeline())).splitlines()
    bars = dict(_label_and_bar(ln) for ln in lines if ln.count("|") >= 2 and "#" in ln)
    assert set(bars["ci pipeline main 9fceb02"]) == {"#"}  # the root spans the whole trace
    short = next(v for k, v in bars.items() if k.startswith("pytest"))
    assert short.count("#") == 1  # 0.25 s of 3 h still shows one cell
    push, deploy = bars["ci image push"], bars["ci deploy production"]
    assert push.index("#") == deploy.index("#")  # same start, same column
    assert deploy.rstrip(" ").endswith("#") and len(deploy) == len(push)


def _label_and_bar(line: str) -> tuple[str, str]:
    right = line.rindex("|")
    left = line.rindex("|", 0, right)
    return line[2:left].strip().lstrip("|`- "), line[left + 1:right]


def test_errors_are_marked_and_colored_only_when_asked() -> None:
    plain = render_waterfall(group_traces(_pipeline()))
    assert "\x1b[" not in plain
    err_lines = [ln for ln in plain.splitlines() if ln.startswith("!")]
    assert len(err_lines) == 2 and "CanaryFailed: error rate 4.2% > 1%" in err_lines[1]
    colored = render_waterfall(group_traces(_pipeline()), color=True)
    assert "\x1b[31m" in colored and "\u2588" in colored


def test_tree_order_and_trace_ids() -> None:
    spans = _pipeline() + [_span(1, 0, "other", "second trace", 0, 1, trace=5)]
    traces = group_traces(spans)
    assert [len(t) for t in traces] == [7, 1]
    out = render_waterfall(traces)
    assert out.startswith("trace 6a1b2c3d00000000000000000000004d  7 spans  3h00m  1 error")
    assert "trace 0000000000000005  1 span  1.00s" in out
    order = [ln for ln in out.splitlines() if ln.startswith(("  ", "! ")) and "|" in ln]
    names = [ln.split("|")[0] for ln in order]
    assert names[0].strip() == "ci pipeline main 9fceb02"
    assert "`- orphan" not in out  # a span whose parent is missing is a root


def test_format_duration() -> None:
    assert [format_duration(x) for x in (850, 12_300, 4_200_000, 1_230_000_000, 125 * S,
                                         3720 * S)] == [
        "850ns", "12.3us", "4.2ms", "1.23s", "2m05s", "1h02m"]
