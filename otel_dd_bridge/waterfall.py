"""A terminal waterfall of Datadog traces: ``otel-dd-bridge view`` and ``demo``.

Per trace: a header (128-bit id, span count, duration, services), then one line per span in
tree order (children sorted by start)::

    trace 3f0c...e21a  4 spans  12.3ms  matchmaker
      span                                     0                       12.3ms
      matchmaker GET /pair/beer              |######################## |  12.3ms
      `- matchmaker SELECT beers             |  ###                    |   2.1ms

The bar column is scaled to the trace (first start to last end) and every bar is at least one
cell wide, so a 1 ms step of a 2 h pipeline still shows. Lines fit ``width`` columns (default
80); long labels are cut with ``~``. Errors: the line starts with ``!`` and the error message
follows on its own line; on a terminal (``color=True``) error lines are red and bars use block
characters. Spans whose parent is not in the trace are drawn as roots.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from otel_dd_bridge.model import DDSpan

__all__ = ["format_duration", "group_traces", "render_waterfall", "trace_id_text"]

_RED = "\x1b[31m"
_DIM = "\x1b[2m"
_RESET = "\x1b[0m"


def format_duration(ns: int) -> str:
    """A short human duration: ``850ns``, ``12.3us``, ``4.2ms``, ``1.23s``, ``2m05s``, ``1h02m``."""
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.1f}us"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f}ms"
    s = ns / 1e9
    if s < 60:
        return f"{s:.2f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def trace_id_text(span: DDSpan) -> str:
    """The trace id as 32 hex digits (upper half from ``_dd.p.tid``) or 16 when 64-bit."""
    tid = span.meta.get("_dd.p.tid", "")
    if tid:
        return f"{tid.rjust(16, '0')}{span.trace_id:016x}"
    return f"{span.trace_id:016x}"


def group_traces(spans: Iterable[DDSpan]) -> list[list[DDSpan]]:
    """Spans grouped by (low 64-bit) trace id, in order of first appearance."""
    by: dict[int, list[DDSpan]] = {}
    for s in spans:
        by.setdefault(s.trace_id, []).append(s)
    for trace in by.values():  # the upper trace-id half rides on one span of each chunk
        tid = next((s.meta["_dd.p.tid"] for s in trace if s.meta.get("_dd.p.tid")), "")
        if tid and not trace[0].meta.get("_dd.p.tid"):
            trace[0] = _with_tid(trace[0], tid)
    return list(by.values())


def _with_tid(span: DDSpan, tid: str) -> DDSpan:
    meta = dict(span.meta)
    meta["_dd.p.tid"] = tid
    return DDSpan(span.trace_id, span.span_id, span.parent_id, span.service, span.name,
                  span.resource, span.type, span.start, span.duration, span.error, meta,
                  dict(span.metrics))


def _cut(text: str, width: int) -> str:
    text = text.replace("\n", " ").replace("\r", " ").replace("\t", " ")  # one line each
    return text if len(text) <= width else text[: max(0, width - 1)] + "~"


def _order(trace: Sequence[DDSpan]) -> list[tuple[DDSpan, str]]:
    """Spans in tree order with their tree prefix."""
    ids = {s.span_id for s in trace}
    children: dict[int, list[DDSpan]] = {}
    roots: list[DDSpan] = []
    for s in trace:
        if s.parent_id and s.parent_id in ids and s.parent_id != s.span_id:
            children.setdefault(s.parent_id, []).append(s)
        else:
            roots.append(s)
    out: list[tuple[DDSpan, str]] = []
    seen: set[int] = set()

    def walk(span: DDSpan, lead: str, branch: str) -> None:
        if id(span) in seen:
            return
        seen.add(id(span))
        out.append((span, lead + branch))
        kids = sorted(children.get(span.span_id, []), key=lambda x: (x.start, x.span_id))
        nxt = lead + {"": "", "`- ": "   "}.get(branch, "|  ")
        for i, k in enumerate(kids):
            walk(k, nxt, "`- " if i == len(kids) - 1 else "|- ")

    for r in sorted(roots, key=lambda x: (x.start, x.span_id)):
        walk(r, "", "")
    for s in trace:  # cycles (a -> b -> a) have no root: show them anyway
        if id(s) not in seen:
            walk(s, "", "")
    return out


def render_waterfall(
    traces: Sequence[Sequence[DDSpan]], *, width: int = 80, color: bool = False
) -> str:
    """Render traces as a waterfall; ``color`` adds ANSI colors and block bars (terminals)."""
    width = max(width, 50)
    dur_w = 8
    bar_w = max(10, (width - 2 - dur_w - 4) * 2 // 5)
    label_w = width - 2 - bar_w - 2 - 1 - dur_w
    fill, empty = ("\u2588", " ") if color else ("#", " ")
    lines: list[str] = []
    for trace in traces:
        if not trace:
            continue
        t0 = min(s.start for s in trace)
        t1 = max(s.start + s.duration for s in trace)
        total = max(t1 - t0, 1)
        services = sorted({s.service for s in trace})
        head_id = next((trace_id_text(s) for s in trace if s.meta.get("_dd.p.tid")),
                       trace_id_text(trace[0]))
        errors = sum(1 for s in trace if s.error)
        head = (f"trace {head_id}  {len(trace)} span{'s' if len(trace) != 1 else ''}  "
                f"{format_duration(total)}" + (f"  {errors} error{'s' if errors != 1 else ''}"
                                               if errors else ""))
        head = _cut(head + "  " + ", ".join(services), width)
        lines.append(head)
        axis_end = format_duration(total)
        axis = "0" + " " * max(1, bar_w - 1 - len(axis_end)) + axis_end
        lines.append("  " + "span".ljust(label_w) + " " + (_DIM + axis + _RESET if color else axis))
        for span, prefix in _order(trace):
            label = _cut(prefix + f"{span.service} {span.resource or span.name}", label_w)
            a = (span.start - t0) * bar_w // total
            b = -(-(span.start + span.duration - t0) * bar_w // total)
            a = min(max(a, 0), bar_w - 1)
            b = min(max(b, a + 1), bar_w)
            bar = empty * a + fill * (b - a) + empty * (bar_w - b)
            mark = "! " if span.error else "  "
            line = f"{mark}{label.ljust(label_w)}|{bar}| {format_duration(span.duration):>{dur_w}}"
            if span.error and color:
                line = _RED + line + _RESET
            lines.append(line)
            if span.error:
                msg = span.meta.get("error.msg") or span.meta.get("error.message") or ""
                typ = span.meta.get("error.type", "")
                text = ": ".join(x for x in (typ, msg) if x) or "error"
                indent = " " * (len(prefix) + 4)
                err_line = _cut(f"! {indent}{text}", width)
                lines.append(_RED + err_line + _RESET if color else err_line)
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n" if lines else ""
