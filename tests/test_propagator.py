"""DatadogPropagator: header forms, malformed input, 64/128-bit ids, tag limits, and the
extracted decision surviving into exported Datadog spans."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_dd_bridge import DatadogPropagator, TranslateOptions, translate_spans
from otel_dd_bridge._ddstate import DDState, format_dd_member, parse_dd_member

P = DatadogPropagator()
HIGH = 0x640CFD8D00000000
LOW = 12345678901234567890


def _ctx(headers: dict[str, str]):
    return trace.get_current_span(P.extract(headers)).get_span_context()


def test_extract_full_headers_128_bit() -> None:
    sc = _ctx({"x-datadog-trace-id": str(LOW), "x-datadog-parent-id": "42",
               "x-datadog-sampling-priority": "2", "x-datadog-origin": "synthetics",
               "x-datadog-tags": f"_dd.p.dm=-4,_dd.p.tid={HIGH:016x},_dd.p.usr.id=bob,other=x"})
    assert sc.is_valid and sc.is_remote
    assert sc.trace_id == (HIGH << 64) | LOW and sc.span_id == 42 and sc.trace_flags.sampled
    st = parse_dd_member(sc.trace_state.get("dd"))
    assert st.priority == 2 and st.origin == "synthetics" and st.parent_id == f"{42:016x}"
    assert st.tags == {"_dd.p.dm": "-4", "_dd.p.usr.id": "bob"}


def test_extract_64_bit_and_reject_priority() -> None:
    sc = _ctx({"x-datadog-trace-id": "7", "x-datadog-parent-id": "8",
               "x-datadog-sampling-priority": "-1"})
    assert sc.trace_id == 7 and not sc.trace_flags.sampled


@pytest.mark.parametrize("headers", [
    {},
    {"x-datadog-trace-id": "abc", "x-datadog-parent-id": "1"},
    {"x-datadog-trace-id": "0", "x-datadog-parent-id": "1"},
    {"x-datadog-trace-id": str(2**64), "x-datadog-parent-id": "1"},
    {"x-datadog-trace-id": "1", "x-datadog-parent-id": "0"},
    {"x-datadog-trace-id": "-1", "x-datadog-parent-id": "1"},
    {"x-datadog-parent-id": "1"},
])
def test_malformed_headers_extract_nothing(headers) -> None:
    base = Context()
    assert P.extract(headers, base) is base


def test_malformed_tid_and_oversized_tags_are_ignored() -> None:
    sc = _ctx({"x-datadog-trace-id": "5", "x-datadog-parent-id": "6",
               "x-datadog-tags": "_dd.p.tid=XYZ"})
    assert sc.trace_id == 5
    sc = _ctx({"x-datadog-trace-id": "5", "x-datadog-parent-id": "6",
               "x-datadog-tags": "_dd.p.dm=-4," + "_dd.p.x=" + "a" * 600})
    assert parse_dd_member(sc.trace_state.get("dd")).tags == {}


def test_inject_round_trip() -> None:
    headers = {"x-datadog-trace-id": str(LOW), "x-datadog-parent-id": "42",
               "x-datadog-sampling-priority": "2", "x-datadog-origin": "rum",
               "x-datadog-tags": f"_dd.p.dm=-4,_dd.p.tid={HIGH:016x}"}
    out: dict[str, str] = {}
    P.inject(out, P.extract(headers))
    assert out["x-datadog-trace-id"] == str(LOW) and out["x-datadog-parent-id"] == "42"
    assert out["x-datadog-sampling-priority"] == "2" and out["x-datadog-origin"] == "rum"
    assert set(out["x-datadog-tags"].split(",")) == {"_dd.p.dm=-4", f"_dd.p.tid={HIGH:016x}"}


def test_inject_nothing_without_a_valid_span() -> None:
    out: dict[str, str] = {}
    P.inject(out, Context())
    assert out == {}


def test_dd_member_encoding_and_cap() -> None:
    st = DDState(priority=1, origin="a=b;c", tags={"_dd.p.dm": "-3"})
    value = format_dd_member(st)
    assert value == "s:1;o:a~b_c;t.dm:-3"
    assert parse_dd_member(value).origin == "a=b_c"
    big = DDState(priority=1, tags={f"_dd.p.k{i}": "v" * 20 for i in range(30)})
    assert len(format_dd_member(big)) + 3 <= 256



def test_extracted_priority_and_origin_survive_into_exported_spans() -> None:
    sink = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "down"}))
    provider.add_span_processor(SimpleSpanProcessor(sink))
    tracer = provider.get_tracer("t")
    ctx = P.extract({"x-datadog-trace-id": str(LOW), "x-datadog-parent-id": "42",
                     "x-datadog-sampling-priority": "2", "x-datadog-origin": "synthetics",
                     "x-datadog-tags": f"_dd.p.dm=-4,_dd.p.tid={HIGH:016x}"})
    with tracer.start_as_current_span("server", context=ctx, kind=trace.SpanKind.SERVER):
        with tracer.start_as_current_span("child"):
            pass
    provider.shutdown()
    [chunk] = translate_spans(list(sink.get_finished_spans()), TranslateOptions())
    assert chunk.priority == 2 and chunk.origin == "synthetics"
    first = chunk.spans[0]
    assert first.metrics["_sampling_priority_v1"] == 2 and first.meta["_dd.p.dm"] == "-4"
    assert first.meta["_dd.p.tid"] == f"{HIGH:016x}"
    assert all(s.meta["_dd.origin"] == "synthetics" for s in chunk.spans)
    assert all(s.trace_id == LOW for s in chunk.spans)
    assert {s.parent_id for s in chunk.spans} >= {42}


def test_entry_point_is_registered() -> None:
    from importlib.metadata import entry_points

    eps = entry_points(group="opentelemetry_propagator", name="datadog")
    assert [ep.load() for ep in eps] == [DatadogPropagator]


def _root_meta_after_extract(headers: dict[str, str]) -> dict[str, str]:
    sink = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "down"}))
    provider.add_span_processor(SimpleSpanProcessor(sink))
    with provider.get_tracer("t").start_as_current_span("srv", context=P.extract(headers)):
        pass
    provider.shutdown()
    return translate_spans(list(sink.get_finished_spans()), TranslateOptions())[0].spans[0].meta


@pytest.mark.parametrize(("tags", "error"), [
    ("_dd.p.tid=XYZ", "malformed_tid XYZ"),
    ("_dd.p.dm=-4," + "_dd.p.x=" + "a" * 600, "extract_max_size"),
    ("no-equals-sign", "decoding_error"),
])
def test_extract_errors_tag_the_local_root(tags, error) -> None:
    meta = _root_meta_after_extract({"x-datadog-trace-id": "5", "x-datadog-parent-id": "6",
                                     "x-datadog-tags": tags})
    assert meta["_dd.propagation_error"] == error


def test_inject_over_limit_omits_header_and_tags_span(monkeypatch) -> None:
    # Tags reach inject through the tracestate dd= member (at most 256 characters), so a
    # 512-character header cannot happen in practice; a smaller limit exercises the branch.
    import otel_dd_bridge.propagator as mod

    sink = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(sink))
    ctx = P.extract({"x-datadog-trace-id": "5", "x-datadog-parent-id": "6",
                     "x-datadog-sampling-priority": "1",
                     "x-datadog-tags": "_dd.p.dm=-4,_dd.p.usr.id=someone"})
    monkeypatch.setattr(mod, "MAX_TAGS_LEN", 20)
    out: dict[str, str] = {}
    with provider.get_tracer("t").start_as_current_span("client", context=ctx):
        P.inject(out)
    provider.shutdown()
    assert out["x-datadog-trace-id"] == "5" and "x-datadog-tags" not in out
    assert list(sink.get_finished_spans())[0].attributes["_dd.propagation_error"] == "inject_max_size"
