"""The fast translation/encoding paths give the same output as the general ones.

* private SDK fields (``ReadableSpan``/``Span`` exact types) vs the public API (a subclass and
  a proxy that hides every private attribute), over the benchmark's real-SDK span set and
  random spans;
* ormsgpack vs msgpack packing: byte-identical bodies;
* the strict newer v0.4 keys (wire.md §1.2) when a DDSpan carries them.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from benchmarks.spanset import build_spans
from otel_dd_bridge.encoding import get_encoder
from otel_dd_bridge.encoding._pack import HAVE_ORMSGPACK, use_ormsgpack
from otel_dd_bridge.model import DDSpan, DDSpanEvent, DDSpanLink, TraceChunk
from otel_dd_bridge.translate import TranslateOptions, translate_spans
from tests.spans import make_span


class PublicOnly:
    """Forwards the public ReadableSpan API only (every ``_private`` attribute is missing)."""

    def __init__(self, inner: ReadableSpan) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)


class Subclass(ReadableSpan):
    """A ReadableSpan subclass: not an exact SDK type, so the public API is used."""


def _subclass(s: ReadableSpan) -> ReadableSpan:
    return Subclass(name=s.name, context=s.context, parent=s.parent, resource=s.resource,
                    attributes=s.attributes, events=s.events, links=s.links, kind=s.kind,
                    status=s.status, start_time=s.start_time, end_time=s.end_time,
                    instrumentation_scope=s.instrumentation_scope)


@pytest.fixture(scope="module")
def sdk_spans() -> list[ReadableSpan]:
    return build_spans(400)


def test_private_fast_path_equals_public_fallback_on_real_sdk_spans(sdk_spans) -> None:
    opts = TranslateOptions()
    fast = translate_spans(sdk_spans, opts)
    assert {type(s).__name__ for s in sdk_spans} == {"_Span"} or all(
        type(s).__module__.startswith("opentelemetry.sdk") for s in sdk_spans)
    for wrap in (PublicOnly, _subclass):
        slow = translate_spans([wrap(s) for s in sdk_spans], opts)  # type: ignore[misc]
        assert slow == fast
    body = get_encoder("v0.4").encode(fast)
    assert body == get_encoder("v0.4").encode(translate_spans(
        [PublicOnly(s) for s in sdk_spans], opts))  # type: ignore[misc]
    # the error spans (2%) carry their exception data
    errs = [s for c in fast for s in c.spans if s.error]
    assert errs and all(s.meta["error.type"] == "ValueError" for s in errs)


vals = st.one_of(st.text(max_size=8), st.integers(-5, 300), st.floats(allow_nan=False),
                 st.booleans(), st.sampled_from(["GET", "postgresql", "redis", "200"]))
keys = st.sampled_from(["http.request.method", "http.method", "http.route", "db.system",
                        "db.statement", "http.status_code", "http.response.status_code",
                        "server.address", "rpc.system", "grpc.code", "service.version",
                        "deployment.environment", "env", "version", "span.kind", "x", "y"])


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(keys, vals, max_size=8), st.dictionaries(keys, vals, max_size=4),
       st.sampled_from(list(SpanKind)), st.booleans())
def test_private_and_public_paths_agree_on_random_spans(attrs, res, kind, child) -> None:
    span = make_span(kind=kind, attributes=attrs, resource=res, parent_id=7 if child else None)
    fast = translate_spans([span], TranslateOptions())
    assert translate_spans([PublicOnly(span)], TranslateOptions()) == fast  # type: ignore[list-item]
    assert translate_spans([_subclass(span)], TranslateOptions()) == fast


def test_ormsgpack_and_msgpack_bodies_are_identical(sdk_spans) -> None:
    assert HAVE_ORMSGPACK, "the test extra installs ormsgpack (the optional accelerator)"
    chunks = translate_spans(sdk_spans, TranslateOptions())
    edge = [TraceChunk(spans=[DDSpan(2**64 - 1, 1, 0, "s", "n", "r" * 300, "", 2**63 - 1, 0, 1,
                                     {"é" * 40: "x" * 70000, "": ""},
                                     {"i": -(2**63), "f": 1.5, "z": 0, "big": 2**32})])]
    for version in ("v0.4", "v0.5"):
        enc = get_encoder(version)
        for c in (chunks, edge):
            prev = use_ormsgpack(True)
            try:
                fast = enc.encode(c)
                use_ormsgpack(False)
                pure = enc.encode(c)
            finally:
                use_ormsgpack(prev)
            assert fast == pure


def test_ormsgpack_refusals_fall_back_to_msgpack_errors() -> None:
    bad = [TraceChunk(spans=[DDSpan(1, 1, 0, "s\udcff", "n", "r", "", 0, 0, 0, {}, {})])]
    with pytest.raises(UnicodeEncodeError):
        get_encoder("v0.4").encode(bad)


def _decode(body: bytes) -> Any:
    return msgpack.unpackb(body, raw=False)


def test_v04_newer_keys_strict_shapes() -> None:
    base = dict(trace_id=1, span_id=2, parent_id=0, service="s", name="n", resource="r",
                type="", start=1, duration=1, error=0, meta={}, metrics={})
    empty = DDSpan(**base, meta_struct={}, span_links=[], span_events=[])  # type: ignore[arg-type]
    [[span]] = _decode(get_encoder("v0.4").encode([TraceChunk(spans=[empty])]))
    assert not {"meta_struct", "span_links", "span_events"} & set(span)  # omitted, never nil
    full = DDSpan(**base, meta_struct={"appsec": msgpack.packb({"k": 1})},  # type: ignore[arg-type]
                  span_links=[DDSpanLink(trace_id=5, span_id=6, trace_id_high=7,
                                         attributes={"a": "b"}, tracestate="dd=s:1",
                                         flags=(1 << 31) | 1),
                              DDSpanLink(trace_id=8, span_id=9)],
                  span_events=[DDSpanEvent("e", 10, {"d": 3.0, "i": 4, "b": True, "s": "x",
                                                     "l": [1, 2.5]})])
    raw = get_encoder("v0.4").encode([TraceChunk(spans=[full])])
    # decode keeping bin apart from str
    [[span]] = msgpack.unpackb(raw, raw=False)
    assert isinstance(span["meta_struct"]["appsec"], bytes)
    assert span["span_links"][0] == {"trace_id": 5, "trace_id_high": 7, "span_id": 6,
                                     "attributes": {"a": "b"}, "tracestate": "dd=s:1",
                                     "flags": (1 << 31) | 1}
    assert span["span_links"][1] == {"trace_id": 8, "span_id": 9}
    attrs = span["span_events"][0]["attributes"]
    assert attrs["d"] == {"type": 3, "double_value": 3.0} and type(attrs["d"]["double_value"]) is float
    assert attrs["i"] == {"type": 2, "int_value": 4}
    assert attrs["b"] == {"type": 1, "bool_value": True}
    assert attrs["l"]["array_value"]["values"][1] == {"type": 3, "double_value": 2.5}
    assert b"\xce\x80\x00\x00\x01" in raw  # flags packed as uint32, not a negative int


shared_keys = st.sampled_from(["team", "region", "x", "deployment.environment", "service.version",
                               "host.name", "http.route", "db.system"])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.dictionaries(shared_keys, st.text(max_size=4), max_size=4),
                          st.dictionaries(shared_keys, st.text(max_size=4), max_size=4)),
                min_size=2, max_size=6))
def test_span_attributes_clashing_with_resource_keys_do_not_depend_on_order(pairs) -> None:
    """The memoised "this key is also a resource key" bit must not make output order-dependent:
    a span attribute equal to a resource attribute key, seen before or after that resource."""
    spans = [make_span(f"s{i}", attributes=attrs, resource=res, trace_id=100 + i, span_id=1 + i)
             for i, (attrs, res) in enumerate(pairs)]
    opts = TranslateOptions()
    forward = translate_spans(spans, opts)
    backward = translate_spans(spans[::-1], opts)
    alone = [c for s in spans for c in translate_spans([s], opts)]
    by_trace = {c.spans[0].trace_id: c for c in backward}
    assert [by_trace[c.spans[0].trace_id] for c in forward] == forward
    assert alone == forward
