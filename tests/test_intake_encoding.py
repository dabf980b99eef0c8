"""The agentless intake encoding (encoding/intake_protobuf.py), decoded two independent ways:
the harness's own protobuf wire reader (field table from wire.md §3.3) and the generated
classes. Also: the .proto matches the wire.md table, and what an Agent would not forward."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from otel_dd_bridge.encoding.intake_protobuf import PRIORITY_NONE, IntakeEncoder
from otel_dd_bridge.intake import select_forwarded
from otel_dd_bridge.model import DDSpan, DDSpanEvent, DDSpanLink, PayloadInfo, TraceChunk
from otel_dd_bridge.proto import agent_payload_pb2 as pb
from otel_dd_bridge.translate import TranslateOptions, translate_spans
from tests.harness.fakeintake import AGENT_PAYLOAD_SCHEMA, decode_agent_payload, decode_message
from tests.spans import SPAN_ID, TRACE_ID, make_span


def _span(span_id: int = 1, parent_id: int = 0, **kw: object) -> DDSpan:
    base: dict[str, object] = dict(
        trace_id=7, span_id=span_id, parent_id=parent_id, service="svc", name="op",
        resource="res", type="web", start=1_700_000_000_000_000_000, duration=5_000,
        error=0, meta={"k": "v"}, metrics={"m": 1.5},
    )
    base.update(kw)
    return DDSpan(**base)  # type: ignore[arg-type]


def _sdk_spans() -> list:
    """A small trace through the real SDK span type: server root, SQL client, an error with an
    exception event, a link, 128-bit ids, an upstream origin and decision maker."""
    res = Resource({"service.name": "checkout", "deployment.environment.name": "prod",
                    "service.version": "1.4.2", "host.name": "web-1", "container.id": "c0ffee",
                    "k8s.namespace.name": "shop"})
    ts = "dd=s:2;o:synthetics;t.dm:-4"
    root = make_span("GET /cart", kind=SpanKind.SERVER, resource=res, trace_state=ts,
                     attributes={"http.request.method": "GET", "http.route": "/cart",
                                 "http.response.status_code": 200})
    db = make_span("SELECT", kind=SpanKind.CLIENT, resource=res, trace_state=ts,
                   span_id=SPAN_ID + 1, parent_id=SPAN_ID,
                   attributes={"db.system": "postgresql",
                               "db.statement": "SELECT * FROM carts WHERE id = 42"})
    link = Link(SpanContext(0xABC, 0xDEF, False, TraceFlags(1)), {"l": "x"})
    err = make_span("charge", kind=SpanKind.INTERNAL, resource=res, trace_state=ts,
                    span_id=SPAN_ID + 2, parent_id=SPAN_ID, links=[link],
                    status=Status(StatusCode.ERROR, "card declined"),
                    events=[Event("exception", {"exception.type": "ValueError",
                                                "exception.message": "declined",
                                                "exception.stacktrace": "Traceback..."})])
    return [root, db, err]


def _pb_span_dict(s: pb.Span) -> dict:
    return dict(service=s.service, name=s.name, resource=s.resource, traceID=s.traceID,
                spanID=s.spanID, parentID=s.parentID, start=s.start, duration=s.duration,
                error=s.error, meta=dict(s.meta), metrics=dict(s.metrics), type=s.type)


def _model_dict(s: DDSpan) -> dict:
    return dict(service=s.service, name=s.name, resource=s.resource, traceID=s.trace_id,
                spanID=s.span_id, parentID=s.parent_id, start=s.start, duration=s.duration,
                error=s.error, meta=s.meta, metrics={k: float(v) for k, v in s.metrics.items()},
                type=s.type)


def test_translated_sdk_spans_arrive_with_every_field() -> None:
    chunks = translate_spans(_sdk_spans(), TranslateOptions())
    raw = IntakeEncoder(env="prod", runtime_id="rid-1").encode(chunks)
    ours = decode_agent_payload(raw)
    theirs = pb.AgentPayload.FromString(raw)

    assert ours["_unknown"] == []
    assert ours["hostName"] == "" and ours["env"] == "prod"
    assert ours["agentVersion"].startswith("otel-dd-bridge/")
    assert ours["targetTPS"] == 10.0 and ours["errorTPS"] == 10.0
    [tp] = ours["tracerPayloads"]
    assert tp["containerDebug"] is None and not theirs.tracerPayloads[0].HasField("containerDebug")
    assert tp["languageName"] == "python" and tp["languageVersion"]
    assert tp["tracerVersion"] and tp["runtimeID"] == "rid-1"
    assert tp["env"] == "prod" and tp["appVersion"] == "1.4.2"
    assert tp["hostname"] == "web-1" and tp["containerID"] == "c0ffee"
    assert tp["tags"]["_dd.tags.container"] == "container_id:c0ffee,kube_namespace:shop"
    [chunk] = tp["chunks"]
    assert chunk["priority"] == 2 and chunk["origin"] == "synthetics"
    assert chunk["tags"]["_dd.p.dm"] == "-4" and chunk["droppedTrace"] is False

    model = [_model_dict(s) for s in chunks[0].spans]
    decoded = [{k: v for k, v in s.items() if not k.startswith("_") and k in model[0]}
               for s in chunk["spans"]]
    assert decoded == model
    assert [_pb_span_dict(s) for s in theirs.tracerPayloads[0].chunks[0].spans] == model
    by_id = {s["spanID"]: s for s in chunk["spans"]}
    assert by_id[SPAN_ID]["traceID"] == TRACE_ID & (2**64 - 1)
    assert by_id[SPAN_ID]["meta"]["_dd.p.tid"] == f"{TRACE_ID >> 64:016x}"
    assert by_id[SPAN_ID + 2]["error"] == 1
    assert by_id[SPAN_ID + 2]["meta"]["error.msg"] == "declined"
    assert "_dd.span_links" in by_id[SPAN_ID + 2]["meta"]  # as the Agent's OTLP ingest stores it
    assert all(s["spanLinks"] == [] and s["spanEvents"] == [] for s in chunk["spans"])


def test_chunk_fields_fall_back_like_the_agent() -> None:
    root = _span(1, meta={"env": "staging", "version": "9", "_dd.hostname": "h1",
                          "_dd.origin": "rum"}, metrics={"_sampling_priority_v1": 1.0})
    child = _span(2, 1, meta={"_dd.p.dm": "-3"})
    chunks = [TraceChunk([child, root], payload=PayloadInfo()),
              TraceChunk([_span(3, trace_id=8)], payload=None)]
    out = decode_agent_payload(IntakeEncoder().encode(chunks))
    assert out["env"] == "none"  # an unconfigured Agent's default env
    tp0, tp1 = out["tracerPayloads"]
    assert (tp0["env"], tp0["appVersion"], tp0["hostname"]) == ("staging", "9", "h1")
    c = tp0["chunks"][0]
    assert c["priority"] == 1 and c["origin"] == "rum" and c["tags"] == {"_dd.p.dm": "-3"}
    assert tp1["chunks"][0]["priority"] == PRIORITY_NONE == -128


def test_one_tracer_payload_per_resource_and_empty_chunks_skipped() -> None:
    a, b = PayloadInfo(env="a"), PayloadInfo(env="b")
    chunks = [TraceChunk([_span(1)], priority=1, payload=a), TraceChunk([], payload=b),
              TraceChunk([_span(2, trace_id=9)], priority=1, payload=b),
              TraceChunk([_span(3, trace_id=10)], priority=1, payload=a)]
    out = decode_agent_payload(IntakeEncoder().encode(chunks))
    assert [(tp["env"], len(tp["chunks"])) for tp in out["tracerPayloads"]] == [("a", 2), ("b", 1)]


def test_generated_schema_matches_the_wire_md_table() -> None:
    """The .proto and the harness table were written separately from wire.md: they agree."""
    kinds = {1: "double", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64", 8: "bool",
             9: "string", 11: "msg", 12: "bytes", 13: "uint32", 14: "enum"}
    for name, fields in AGENT_PAYLOAD_SCHEMA.items():
        desc = pb.DESCRIPTOR.message_types_by_name[name]
        got = {}
        for f in desc.fields:
            t = kinds[f.type]
            if f.message_type is not None and f.message_type.GetOptions().map_entry:
                t = "map"
            elif f.message_type is not None:
                t = "msg"
            got[f.number] = (f.name, t)
        want = {}
        for num, (fname, kind) in fields.items():
            if isinstance(kind, tuple):
                k = kind[1] if kind[0] == "rep" else kind
                t = "map" if kind[0] == "map" else (k[0] if isinstance(k, tuple) else k)
            else:
                t = kind
            want[num] = (fname, t)
        assert got == want, name
    ap = pb.DESCRIPTOR.message_types_by_name["AgentPayload"]
    assert 12 not in {f.number for f in ap.fields}
    tp = pb.DESCRIPTOR.message_types_by_name["TracerPayload"]
    assert tp.fields_by_number[11].message_type.name == "ContainerDebug"


def test_native_links_events_and_meta_struct_use_their_protobuf_fields() -> None:
    s = DDSpan(7, 1, 0, "svc", "op", "res", "", 1, 2, 0, {}, {},
               meta_struct={"appsec": b"\x81\xa1a\x01"},
               span_links=[DDSpanLink(trace_id=5, span_id=6, trace_id_high=4,
                                      attributes={"a": "b"}, tracestate="x=y",
                                      flags=0x80000001),
                           DDSpanLink(trace_id=8, span_id=9)],
               span_events=[DDSpanEvent("ev", 10**18 + 1, {
                   "s": "x", "b": True, "i": 3, "d": 2.0, "arr": ["a", 1, 1.5, False]})])
    raw = IntakeEncoder().encode([TraceChunk([s], priority=1)])
    span = decode_agent_payload(raw)["tracerPayloads"][0]["chunks"][0]["spans"][0]
    assert span["spanLinks"][1]["flags"] == 0  # flags unknown: not set
    assert span["meta_struct"] == {"appsec": b"\x81\xa1a\x01"}
    link = span["spanLinks"][0]
    assert (link["traceID"], link["traceID_high"], link["spanID"]) == (5, 4, 6)
    assert link["flags"] == 0x80000001 and link["tracestate"] == "x=y"
    assert link["attributes"] == {"a": "b"}
    [ev] = span["spanEvents"]
    assert ev["time_unix_nano"] == 10**18 + 1 and ev["name"] == "ev"
    a = ev["attributes"]
    assert (a["s"]["type"], a["s"]["string_value"]) == (0, "x")
    assert (a["b"]["type"], a["b"]["bool_value"]) == (1, True)
    assert (a["i"]["type"], a["i"]["int_value"]) == (2, 3)
    assert (a["d"]["type"], a["d"]["double_value"]) == (3, 2.0)
    assert a["arr"]["type"] == 4
    assert [v["type"] for v in a["arr"]["array_value"]["values"]] == [0, 2, 3, 1]
    # and the generated classes read the same bytes the same way
    gen = pb.AgentPayload.FromString(raw).tracerPayloads[0].chunks[0].spans[0]
    assert gen.spanEvents[0].attributes["arr"].array_value.values[2].double_value == 1.5


@pytest.mark.parametrize(
    ("priority", "sent"),
    [(2, 2), (1, 2), (None, 2), (0, 0), (-1, 0)],
)
def test_only_chunks_an_agent_forwards_are_kept(priority, sent) -> None:
    chunk = TraceChunk([_span(1), _span(2, 1)], priority=priority)
    kept, dropped = select_forwarded([chunk])
    assert sum(len(c.spans) for c in kept) == sent and dropped == 2 - sent


def test_single_span_sampled_spans_survive_a_dropped_trace() -> None:
    keep = _span(2, 1, metrics={"_dd.span_sampling.mechanism": 8})
    chunk = TraceChunk([_span(1), keep, _span(3, 1)], priority=0, tags={"_dd.p.dm": "-0"})
    kept, dropped = select_forwarded([chunk])
    assert dropped == 2
    [c] = kept
    assert c.spans == [keep] and c.dropped_trace is True and chunk.dropped_trace is False
    out = decode_agent_payload(IntakeEncoder().encode(kept))
    assert out["tracerPayloads"][0]["chunks"][0]["droppedTrace"] is True


_text = st.text(max_size=20)
_u64 = st.integers(min_value=1, max_value=2**64 - 1)


@settings(max_examples=60, deadline=None)
@given(
    trace_id=_u64, span_id=_u64, parent_id=st.integers(min_value=0, max_value=2**64 - 1),
    service=_text, name=_text, resource=_text, type_=_text,
    start=st.integers(min_value=0, max_value=2**63 - 1),
    duration=st.integers(min_value=0, max_value=2**63 - 1), error=st.sampled_from([0, 1]),
    meta=st.dictionaries(_text, _text, max_size=5),
    metrics=st.dictionaries(_text, st.one_of(
        st.floats(allow_nan=False), st.integers(min_value=-(2**53), max_value=2**53)),
        max_size=5),
    priority=st.one_of(st.none(), st.integers(min_value=-1, max_value=2)),
)
def test_decode_of_encode_keeps_every_field(trace_id, span_id, parent_id, service, name,
                                           resource, type_, start, duration, error, meta,
                                           metrics, priority) -> None:
    s = DDSpan(trace_id, span_id, parent_id, service, name, resource, type_, start, duration,
               error, meta, metrics)
    raw = IntakeEncoder().encode([TraceChunk([s], priority=priority)])
    chunk = decode_agent_payload(raw)["tracerPayloads"][0]["chunks"][0]
    assert chunk["priority"] == (PRIORITY_NONE if priority is None else priority)
    got = {k: v for k, v in chunk["spans"][0].items() if k in _model_dict(s)}
    want = _model_dict(s)
    assert got.pop("metrics").keys() == want.pop("metrics").keys()
    assert got == want
    for k, v in metrics.items():
        assert math.isclose(chunk["spans"][0]["metrics"][k], float(v))


def test_reader_rejects_garbage_and_reports_unknown_fields() -> None:
    with pytest.raises(ValueError):
        decode_message("Span", b"\x0a\x05ab")  # string longer than the buffer
    # field 12 of AgentPayload (string "x"): never sent by us, reported when present
    assert decode_agent_payload(b"\x62\x01x")["_unknown"] == [12]
