"""The shared meta tail: plain spans of one (resource, scope, status) share one dict of the
entries those give (resource attributes, scope, ``otel.status_code``, ``env``) instead of a
copy each; every reader still sees the whole meta, and no key is ever sent twice.

Runs compiled and pure (scripts/run.sh re-runs it with OTEL_DD_BRIDGE_NO_EXTENSIONS=1).
"""

from __future__ import annotations

import uuid
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from benchmarks.spanset import build_spans
from otel_dd_bridge.encoding import get_encoder
from otel_dd_bridge.model import TraceChunk
from otel_dd_bridge.translate import TranslateOptions, translate_spans

START = 1_700_000_000_000_000_000


def _unique(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    keys = [k for k, _ in pairs]
    assert len(set(keys)) == len(keys), f"a map repeats a key: {sorted(keys)}"
    return dict(pairs)


def _wire_meta(chunks: list[TraceChunk]) -> list[dict[str, str]]:
    """Each span's meta as the v0.4 and v0.5 bodies carry it (no key twice), encoded before
    anything reads ``.meta``; both formats must agree."""
    for c in chunks:  # what lets the compiled encoders write both parts without a check
        for s in c.spans:
            assert s._tail is None or s._meta.keys().isdisjoint(s._tail), (s._meta, s._tail)
    v04 = msgpack.unpackb(get_encoder("v0.4").encode(chunks), object_pairs_hook=_unique,
                          strict_map_key=False)
    table, traces = msgpack.unpackb(get_encoder("v0.5").encode(chunks),
                                    object_pairs_hook=_unique, strict_map_key=False)
    from_v04 = [span["meta"] for trace in v04 for span in trace]
    from_v05 = [{table[k]: table[v] for k, v in span[9].items()} for t in traces for span in t]
    assert from_v04 == from_v05
    return from_v04


def _span(attrs: dict[str, Any], res: Resource, scope: InstrumentationScope | None,
          span_id: int, status: StatusCode = StatusCode.UNSET,
          kind: SpanKind = SpanKind.CLIENT, root: bool = False) -> ReadableSpan:
    tid = 100 + span_id  # one trace per span
    return ReadableSpan(
        name="op", context=SpanContext(tid, span_id, False, TraceFlags(1)),
        parent=None if root else SpanContext(tid, 999, False, TraceFlags(1)),
        resource=res, attributes=attrs,
        kind=kind, status=Status(status), start_time=START, end_time=START + 10,
        instrumentation_scope=scope,
    )


def test_plain_spans_share_one_tail_and_read_whole() -> None:
    chunks = translate_spans(build_spans(400), TranslateOptions())
    spans = [s for c in chunks for s in c.spans]
    tails = {id(s._tail) for s in spans if s._tail is not None}
    shared = sum(s._tail is not None for s in spans)
    # all but the failing requests (2%: error tags are per span) share a tail
    assert shared >= 0.95 * len(spans)
    assert len(tails) <= 8  # one per (resource, scope, status) seen
    wire = _wire_meta(chunks)
    for s, meta in zip(spans, wire, strict=True):
        tail = s._tail
        if tail is not None:  # disjoint from the span's own entries, and all of it on the wire
            assert s._meta.keys().isdisjoint(tail)
            assert meta == {**s._meta, **tail}
        assert s.meta == meta and s._tail is None  # reading merged it
        assert meta["otel.status_code"] in ("Unset", "Error", "Ok")
        assert meta["telemetry.sdk.language"] == "python"  # a resource attribute
        assert "otel.library.name" in meta  # the scope


def test_known_clashes_keep_the_rule_by_rule_result() -> None:
    res = Resource({"service.name": "svc", "team": "core", "deployment.environment": "prod"})
    scope = InstrumentationScope("lib", "1.0", None, {"scope.attr": "from-scope"})
    spans = [
        # overwritten by the status, the scope name and the scope attribute
        _span({"otel.status_code": "mine", "otel.library.name": "mine", "scope.attr": "mine"},
              res, scope, 1),
        # a resource key: the span's own value wins (resource attributes only fill in)
        _span({"team": "payments"}, res, scope, 2),
        # an empty span value is filled in from the resource
        _span({"team": ""}, res, scope, 3),
        _span({"plain": "x"}, res, scope, 4),
    ]
    chunks = translate_spans(spans, TranslateOptions())
    wire = _wire_meta(chunks)
    got = [s.meta for c in chunks for s in c.spans]
    assert got == wire
    by_id = {s.span_id: s.meta for c in chunks for s in c.spans}
    assert by_id[1]["otel.status_code"] == "Unset"
    assert by_id[1]["otel.library.name"] == "lib" and by_id[1]["scope.attr"] == "from-scope"
    assert by_id[2]["team"] == "payments" and by_id[3]["team"] == "core"
    assert by_id[4]["team"] == "core" and by_id[4]["env"] == "prod"
    assert by_id[4]["scope.attr"] == "from-scope" and by_id[4]["plain"] == "x"


# Keys a span, its resource or its scope can all produce, and keys of the tail.
_KEYS = st.sampled_from([
    "otel.status_code", "otel.library.name", "otel.scope.name", "otel.library.version",
    "otel.scope.version", "env", "deployment.environment", "team", "scope.attr", "version",
    "service.version", "span.kind", "db.name", "http.status_code", "_dd.p.dm", "_dd.hostname",
    "_dd.origin", "w3c.tracestate", "events", "x",
])
_VALUES = st.one_of(st.text(max_size=3), st.integers(0, 700))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.dictionaries(_KEYS, _VALUES, max_size=5), min_size=1, max_size=6),
    st.dictionaries(_KEYS, st.text(max_size=3), max_size=5),
    st.dictionaries(_KEYS, st.text(max_size=3), max_size=3),
    st.sampled_from([StatusCode.UNSET, StatusCode.OK]),
)
def test_no_key_twice_and_the_same_meta_however_spans_are_batched(
    span_attrs: list[dict[str, Any]], res_attrs: dict[str, str], scope_attrs: dict[str, str],
    status: StatusCode,
) -> None:
    res = Resource({"service.name": "svc", **res_attrs})
    scope = InstrumentationScope("lib", "2.0", None, scope_attrs)
    spans = [_span(a, res, scope, i + 1, status, root=i % 2 == 0)
             for i, a in enumerate(span_attrs)]
    opts = TranslateOptions(emit_root_hostname=True)
    together = translate_spans(spans, opts)
    wire = _wire_meta(together)
    assert [s.meta for c in together for s in c.spans] == wire
    # each span alone (its own cache and tail): the same entries
    alone = [s.meta for sp in spans for c in translate_spans([sp], opts) for s in c.spans]
    assert [dict(sorted(m.items())) for m in alone] == [dict(sorted(m.items())) for m in wire]


def test_a_key_first_seen_in_a_new_tail_is_checked_for_the_span_that_built_it() -> None:
    # a key new to the process: the span's attribute pass must already know it is a tail key
    key = f"fresh.{uuid.uuid4().hex}"
    res = Resource({"service.name": f"svc-{uuid.uuid4().hex[:8]}"})
    scope = InstrumentationScope(f"lib-{uuid.uuid4().hex[:8]}", "1", None, {key: "scope"})
    chunks = translate_spans([_span({key: "span"}, res, scope, 1)], TranslateOptions())
    assert _wire_meta(chunks)[0][key] == "scope"  # scope attributes overwrite
