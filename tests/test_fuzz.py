"""Bad-input fuzzing of the whole pipeline (translate -> encode -> size guard -> send).

Property, for any input: ``export()`` returns (never raises); every request body decodes as
msgpack with valid UTF-8 strings and satisfies the Agent's limits (:func:`check_agent_limits`);
and the counters account for every span: ``received == exported + sum(dropped.*)``, with
``exported`` equal to the number of spans the Agent got.

The transport is httpx's ``MockTransport`` (no network; the bodies are what would be sent).
A coverage-guided variant with atheris lives in ``fuzz/``.
"""

from __future__ import annotations

import math
import time

import httpx
import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from otel_dd_bridge import DatadogSpanExporter

U64 = 2**64 - 1
MAX_PAYLOAD = 10 * 1024 * 1024


class Sink:
    """A MockTransport handler that keeps every body and answers like the Agent."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.content)
        return httpx.Response(200, json={"rate_by_service": {"service:,env:": 1.0}})


def check_agent_limits(body: bytes, max_payload: int = MAX_PAYLOAD) -> int:
    """Decode a v0.4 body and assert the Agent's rules; returns the number of spans."""
    assert len(body) <= max_payload
    traces = msgpack.unpackb(body, raw=False, strict_map_key=False)  # raises on bad UTF-8
    n = 0
    for trace in traces:
        assert trace, "empty trace chunk"
        tid = trace[0]["trace_id"]
        for s in trace:
            n += 1
            assert s["trace_id"] == tid
            assert 0 < s["trace_id"] <= U64 and 0 < s["span_id"] <= U64
            assert 0 <= s.get("parent_id", 0) <= U64
            assert -(2**63) <= s["start"] < 2**63 and 0 <= s["duration"] < 2**63  # int64
            assert s.get("error", 0) in (0, 1)
            assert len(s["service"].encode()) <= 100
            assert 0 < len(s["name"].encode()) <= 100
            assert len(s["resource"].encode()) <= 5000 + 3
            assert len(s.get("type", "").encode()) <= 100
            for k, v in (s.get("meta") or {}).items():
                assert isinstance(k, str) and isinstance(v, str)
                # characters, as translate truncates (the Agent's own truncator counts bytes
                # and would cut further: a truncation, not a rejection)
                assert len(k) <= 200 + 3 and len(v) <= 25000 + 3
            for k, v in (s.get("metrics") or {}).items():
                assert isinstance(k, str) and len(k) <= 200 + 3
                assert isinstance(v, (int, float)) and not isinstance(v, bool)
                assert math.isfinite(v)
    return n


def run(spans: list[ReadableSpan], **kw: object) -> tuple[DatadogSpanExporter, Sink]:
    sink = Sink()
    exp = DatadogSpanExporter(agent_url="http://127.0.0.1:9", _environ={},
                              _transport=httpx.MockTransport(sink), **kw)
    result = exp.export(spans)
    assert result in (SpanExportResult.SUCCESS, SpanExportResult.FAILURE)
    got = sum(check_agent_limits(b, exp.config.max_payload_size) for b in sink.bodies)
    s = exp.stats()
    dropped = sum(v for k, v in s.items() if k.startswith("dropped."))
    assert s["received"] == len(spans)
    assert s["exported"] + dropped == len(spans), s
    assert got == s["exported"], (got, s)
    assert s.get("dropped.internal_error", 0) == 0, s  # a bug, not bad input
    exp.shutdown()
    return exp, sink


# --------------------------------------------------------------------------- strategies

weird_text = st.one_of(
    st.text(),  # includes lone surrogates
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=5),
    st.just(""),
    st.builds(lambda n: "é" * n, st.integers(0, 30_000)),
    st.just("\x00\x01\u2028\ufeff"),
)
scalar = st.one_of(
    weird_text,
    st.binary(max_size=40),  # invalid UTF-8 bytes (not valid OTel, but a user can build it)
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
)
value = st.recursive(
    scalar, lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner)),
    max_leaves=12,
)
attributes = st.dictionaries(weird_text, value, max_size=12)
ids = st.one_of(st.just(0), st.integers(1, U64), st.just(U64))
# What the SDK can produce (time_ns(): int64, never negative). Wilder values: see
# test_out_of_range_times_are_accounted.
times = st.one_of(st.just(0), st.integers(0, 2**63 - 1), st.just(1_700_000_000_000_000_000))


@st.composite
def spans(draw: st.DrawFn) -> ReadableSpan:
    trace_id = draw(st.one_of(st.just(0), st.integers(1, 2**128 - 1)))
    span_id = draw(ids)
    parent = draw(st.one_of(st.none(), ids))
    start = draw(times)
    end = draw(st.one_of(times, st.just(start), st.just(start - 1)))  # zero / negative durations
    kind = draw(st.sampled_from(list(SpanKind)))
    res = Resource(draw(attributes))
    events = [Event(draw(weird_text), draw(attributes), timestamp=draw(st.integers(0, 2**63)))
              for _ in range(draw(st.integers(0, 2)))]
    status = draw(st.sampled_from([Status(StatusCode.UNSET), Status(StatusCode.OK),
                                   Status(StatusCode.ERROR, "boom\ud800")]))
    ctx = SpanContext(trace_id, span_id, False, TraceFlags(draw(st.integers(0, 255))))
    pctx = SpanContext(trace_id, parent, draw(st.booleans()), TraceFlags(1)) if parent else None
    return ReadableSpan(
        name=draw(weird_text), context=ctx, parent=pctx, resource=res,
        attributes=draw(attributes), events=events, kind=kind, status=status,
        start_time=start, end_time=end,
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])
@given(st.lists(spans(), min_size=1, max_size=6))
def test_arbitrary_spans_never_raise_and_payload_is_valid(batch: list[ReadableSpan]) -> None:
    run(batch)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(spans(), min_size=1, max_size=4), st.sampled_from(["v0.4", "v0.5"]))
def test_both_wire_versions_accept_fuzzed_spans(batch: list[ReadableSpan], api: str) -> None:
    sink = Sink()
    exp = DatadogSpanExporter(agent_url="http://127.0.0.1:9", api_version=api, _environ={},
                              _transport=httpx.MockTransport(sink))
    exp.export(batch)
    for body in sink.bodies:
        assert len(body) <= exp.config.max_payload_size
        decoded = msgpack.unpackb(body, raw=False, strict_map_key=False)
        assert isinstance(decoded, list)
    s = exp.stats()
    assert s["received"] == s["exported"] + exp.counters.dropped_total()
    exp.shutdown()


# --------------------------------------------------------------------------- big inputs


def _span(trace_id: int, span_id: int, attrs: dict | None = None, parent: int | None = None,
          start: int = 1_700_000_000_000_000_000, end: int = 1_700_000_000_100_000_000,
          res: Resource | None = None) -> ReadableSpan:
    return ReadableSpan(
        name="op", context=SpanContext(trace_id, span_id, False, TraceFlags(1)),
        parent=SpanContext(trace_id, parent, False, TraceFlags(1)) if parent else None,
        resource=res or Resource({"service.name": "fuzz"}), attributes=attrs or {},
        kind=SpanKind.INTERNAL, start_time=start, end_time=end,
    )


def test_100k_attributes_on_one_span() -> None:
    attrs = {f"k{i}": ("v" * (i % 50)) for i in range(100_000)}
    t0 = time.monotonic()
    run([_span(5, 6, attrs)])
    assert time.monotonic() - t0 < 20


def test_huge_strings_and_deep_nesting() -> None:
    deep: object = "leaf"
    for _ in range(200):
        deep = [deep]
    attrs = {"big": "x" * 5_000_000, "k" * 100_000: "v", "deep": deep,
             "nan": math.nan, "inf": math.inf, "-inf": -math.inf, "ints": [2**80, -(2**80)]}
    _, sink = run([_span(7, 8, attrs)])
    [[span]] = msgpack.unpackb(sink.bodies[0], raw=False, strict_map_key=False)
    assert len(span["meta"]["big"]) <= 25003


def test_100k_span_trace() -> None:
    """One trace of 100 000 spans: every span is exported (the trace is sent in parts when it
    alone is bigger than max_payload_size) or dropped and counted; nothing raises."""
    root = 0x1234
    res = Resource({"service.name": "fuzz"})
    spans_ = [_span(99, root, res=res)] + [
        _span(99, root + i, parent=root, res=res) for i in range(1, 100_000)]
    t0 = time.monotonic()
    exp, sink = run(spans_, max_payload_size=2 * 1024 * 1024)
    assert time.monotonic() - t0 < 60
    assert exp.stats()["exported"] == 100_000
    assert len(sink.bodies) > 1
    parts = [t for b in sink.bodies for t in msgpack.unpackb(b, strict_map_key=False)]
    assert {t[0]["trace_id"] for t in parts} == {99}
    # every part carries the chunk-level sampling priority
    assert all("_sampling_priority_v1" in t[0]["metrics"] for t in parts)


def test_ids_zero_clock_skew_and_durations() -> None:
    """trace_id 0 / span_id 0 are dropped (invalid_span); end before start, start before 1970
    and start in 2200 still give a valid payload."""
    batch = [
        _span(0, 1), _span(1, 0),
        _span(2, 3, start=10, end=5),
        _span(4, 5, start=-(10**18), end=0),
        _span(6, 7, start=7_258_118_400_000_000_000, end=7_258_118_400_000_000_001),
        _span(8, 9, start=5, end=5),
    ]
    exp, _ = run(batch)
    s = exp.stats()
    assert (s["exported"], s["dropped.invalid_span"]) == (4, 2)


def test_out_of_range_times_are_accounted() -> None:
    """Times no SDK clock produces (negative, beyond int64/uint64): export() returns and every
    span is exported or dropped and counted; the payload still decodes."""
    batch = [
        _span(10, 11, start=-(2**70), end=0),
        _span(12, 13, start=0, end=2**70),
        _span(14, 15, start=-(2**63), end=2**63 - 1),
        _span(16, 17),  # a normal span in the same batch is not lost with them
    ]
    sink = Sink()
    exp = DatadogSpanExporter(agent_url="http://127.0.0.1:9", _environ={},
                              _transport=httpx.MockTransport(sink))
    exp.export(batch)
    s = exp.stats()
    assert (s["received"], s["exported"], exp.counters.dropped_total()) == (4, 4, 0)
    got = sum(len(t) for b in sink.bodies for t in msgpack.unpackb(b, strict_map_key=False))
    assert got == s["exported"]
    exp.shutdown()
