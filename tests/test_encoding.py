"""v0.4 / v0.5 encoders: decode with msgpack and compare field by field."""

from __future__ import annotations

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from otel_dd_bridge.encoding import get_encoder
from otel_dd_bridge.model import DDSpan, TraceChunk

V04_KEYS = {"trace_id", "span_id", "parent_id", "service", "name", "resource", "type",
            "start", "duration", "error", "meta", "metrics"}


def _span(**kw: object) -> DDSpan:
    base = dict(trace_id=2**64 - 1, span_id=7, parent_id=0, service="svc", name="op",
                resource="GET /", type="web", start=1_700_000_000_000_000_000, duration=5,
                error=1, meta={"a": "b", "é": "ü"}, metrics={"m": 1.5, "n": 2})
    base.update(kw)
    return DDSpan(**base)  # type: ignore[arg-type]


def test_v04_round_trip() -> None:
    chunks = [TraceChunk(spans=[_span(), _span(span_id=8, parent_id=7, type="")]),
              TraceChunk(spans=[_span(trace_id=3)])]
    body = get_encoder("v0.4").encode(chunks)
    traces = msgpack.unpackb(body, raw=False, strict_map_key=False)
    assert len(traces) == 2 and [len(t) for t in traces] == [2, 1]
    first = traces[0][0]
    assert set(first) == V04_KEYS  # no meta_struct / span_links / span_events keys, ever
    assert first["trace_id"] == 2**64 - 1 and first["meta"] == {"a": "b", "é": "ü"}
    assert first["metrics"] == {"m": 1.5, "n": 2}
    assert traces[0][1]["parent_id"] == 7


def _decode_v05(body: bytes) -> list[list[dict[str, object]]]:
    table, traces = msgpack.unpackb(body, raw=False, strict_map_key=False)
    assert table[0] == ""
    out = []
    for t in traces:
        spans = []
        for s in t:
            assert len(s) == 12
            spans.append({
                "service": table[s[0]], "name": table[s[1]], "resource": table[s[2]],
                "trace_id": s[3], "span_id": s[4], "parent_id": s[5], "start": s[6],
                "duration": s[7], "error": s[8],
                "meta": {table[k]: table[v] for k, v in s[9].items()},
                "metrics": {table[k]: v for k, v in s[10].items()}, "type": table[s[11]],
            })
        out.append(spans)
    return out


def test_v05_round_trip() -> None:
    spans = [_span(), _span(span_id=9, service="other", type="")]
    decoded = _decode_v05(get_encoder("v0.5").encode([TraceChunk(spans=spans)]))
    for got, want in zip(decoded[0], spans, strict=False):
        assert got == {k: getattr(want, k) for k in V04_KEYS} | {
            "metrics": {k: float(v) for k, v in want.metrics.items()}
        }


text = st.text(max_size=20)


@given(st.lists(st.tuples(text, text, st.dictionaries(text, text, max_size=5),
                          st.dictionaries(text, st.floats(allow_nan=False), max_size=5)),
                min_size=1, max_size=8))
def test_v05_string_table_holds_every_string(rows) -> None:
    spans = [_span(service=s, resource=r, meta=m, metrics=x, span_id=i + 1)
             for i, (s, r, m, x) in enumerate(rows)]
    decoded = _decode_v05(get_encoder("v0.5").encode([TraceChunk(spans=spans)]))[0]
    for got, want in zip(decoded, spans, strict=False):
        assert got["service"] == want.service and got["resource"] == want.resource
        assert got["meta"] == want.meta and got["metrics"] == want.metrics
