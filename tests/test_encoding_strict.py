"""Our v0.4 bodies pass the Go Agent's strict decoding rules (wire.md §1.2).

Neither the test agent nor the mini-agent enforces these (both decode leniently: the mini-agent
accepted a nil ``span_links`` that the Go Agent answers with 400 for the whole request), so this
test decodes the raw bytes our exporter puts on the wire, with ``msgpack`` keeping every wire
type apart (bin vs str, float vs int, nil), and checks each rule:

* core fields: ids uint64 ints (never floats, never negative), ``start``/``duration`` int64
  ints, ``error`` int32, the four strings str (never bin), ``meta`` str -> str, ``metrics``
  str -> int/float (never bool/nil/str);
* ``meta_struct``, ``span_links``, ``span_events``: **omitted when empty, never nil**;
* ``meta_struct`` values bin, each a msgpack document;
* ``span_links``: ``trace_id``/``trace_id_high``/``span_id`` non-negative ints, ``flags`` in
  uint32 range (bit 31 set means an unsigned encoding), ``attributes`` str -> str map,
  ``tracestate`` str (never nil or bin);
* ``span_events``: ``name`` str, ``time_unix_nano`` non-negative int, attributes typed
  ``{type: 0..4, <value key>}`` with ``double_value`` a msgpack **float** even when integral.

The checker itself is tested first on hand-made payloads that break each rule, so a green run
means something. Links and events must also never be lost: they travel either natively (then
the rules above apply) or as the JSON fallbacks ``_dd.span_links`` / ``events`` in meta.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import msgpack
import pytest
from opentelemetry.sdk.trace import Event
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from otel_dd_bridge import DatadogSpanExporter
from tests.harness.parity_spans import build_parity_spans
from tests.spans import make_span

U64 = 1 << 64
I64 = 1 << 63
I32 = 1 << 31
U32 = 1 << 32
_CORE_U64 = ("trace_id", "span_id", "parent_id")
_CORE_I64 = ("start", "duration")
_CORE_STR = ("service", "name", "resource", "type")
_VALUE_KEYS = {0: "string_value", 1: "bool_value", 2: "int_value", 3: "double_value",
               4: "array_value"}


def _is_int(v: Any) -> bool:
    return type(v) is int


def _check_any_value(where: str, v: Any, out: list[str], *, allow_array: bool = True) -> None:
    if type(v) is not dict:
        out.append(f"{where}: attribute value is {type(v).__name__}, not a map")
        return
    t = v.get("type")
    if not _is_int(t) or t not in _VALUE_KEYS or (t == 4 and not allow_array):
        out.append(f"{where}: attribute type {t!r} invalid")
        return
    key = _VALUE_KEYS[t]
    if key not in v:
        out.append(f"{where}: type {t} without {key}")
        return
    x = v[key]
    if t == 0 and type(x) is not str:
        out.append(f"{where}: string_value is {type(x).__name__}")
    elif t == 1 and type(x) is not bool:
        out.append(f"{where}: bool_value is {type(x).__name__}")
    elif t == 2 and not (_is_int(x) and -I64 <= x < I64):
        out.append(f"{where}: int_value {x!r} not an int64")
    elif t == 3 and type(x) is not float:
        out.append(f"{where}: double_value {x!r} is {type(x).__name__}, must be a msgpack float")
    elif t == 4:
        values = x.get("values") if type(x) is dict else None
        if type(values) is not list:
            out.append(f"{where}: array_value without a values list")
            return
        for i, item in enumerate(values):
            _check_any_value(f"{where}[{i}]", item, out, allow_array=False)


def _check_links(where: str, links: Any, out: list[str]) -> None:
    if type(links) is not list:
        out.append(f"{where}: span_links is {type(links).__name__}, not an array")
        return
    if not links:
        out.append(f"{where}: empty span_links (omit the key)")
    for i, link in enumerate(links):
        w = f"{where}.span_links[{i}]"
        if type(link) is not dict:
            out.append(f"{w}: not a map")
            continue
        for key in ("trace_id", "span_id"):
            if key not in link:
                out.append(f"{w}: {key} missing")
        for key in ("trace_id", "trace_id_high", "span_id"):
            if key in link and not (_is_int(link[key]) and 0 <= link[key] < U64):
                out.append(f"{w}: {key} {link[key]!r} not a uint64 int")
        if "flags" in link and not (_is_int(link["flags"]) and 0 <= link["flags"] < U32):
            out.append(f"{w}: flags {link['flags']!r} not a uint32")
        if "attributes" in link:
            attrs = link["attributes"]
            if type(attrs) is not dict:
                out.append(f"{w}: attributes is {type(attrs).__name__}, not a str map")
            elif any(type(k) is not str or type(v) is not str for k, v in attrs.items()):
                out.append(f"{w}: attributes not str -> str")
        if "tracestate" in link and type(link["tracestate"]) is not str:
            out.append(f"{w}: tracestate is {type(link['tracestate']).__name__}, not str")


def _check_events(where: str, events: Any, out: list[str]) -> None:
    if type(events) is not list:
        out.append(f"{where}: span_events is {type(events).__name__}, not an array")
        return
    if not events:
        out.append(f"{where}: empty span_events (omit the key)")
    for i, ev in enumerate(events):
        w = f"{where}.span_events[{i}]"
        if type(ev) is not dict:
            out.append(f"{w}: not a map")
            continue
        if type(ev.get("name")) is not str:
            out.append(f"{w}: name {ev.get('name')!r} not str")
        t = ev.get("time_unix_nano")
        if not (_is_int(t) and 0 <= t < U64):
            out.append(f"{w}: time_unix_nano {t!r} not a non-negative int")
        if "attributes" in ev:
            attrs = ev["attributes"]
            if type(attrs) is not dict:
                out.append(f"{w}: attributes is {type(attrs).__name__}, not a map")
                continue
            for k, v in attrs.items():
                if type(k) is not str:
                    out.append(f"{w}: attribute key {k!r} not str")
                _check_any_value(f"{w}.attributes[{k!r}]", v, out)


def strict_v04_violations(body: bytes) -> list[str]:
    """Every way ``body`` breaks the Go Agent's v0.4 decoding rules; empty when none."""
    out: list[str] = []
    try:
        # raw=False keeps bin (-> bytes) apart from str (-> str); floats stay floats.
        payload = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:  # noqa: BLE001 - any decode error is a violation
        return [f"not msgpack: {exc}"]
    if type(payload) is not list:
        return [f"top level is {type(payload).__name__}, not an array of traces"]
    for ti, trace in enumerate(payload):
        if type(trace) is not list:
            out.append(f"trace {ti}: not an array of spans")
            continue
        for si, span in enumerate(trace):
            where = f"trace {ti} span {si}"
            if type(span) is not dict:
                out.append(f"{where}: not a map")
                continue
            for k in span:
                if type(k) is not str:
                    out.append(f"{where}: key {k!r} is not a msgpack str")
            for k in _CORE_U64:
                if k in span and not (_is_int(span[k]) and 0 <= span[k] < U64):
                    out.append(f"{where}: {k} {span[k]!r} not a uint64 int")
            for k in _CORE_I64:
                if k in span and not (_is_int(span[k]) and -I64 <= span[k] < I64):
                    out.append(f"{where}: {k} {span[k]!r} not an int64 int")
            if "error" in span and not (_is_int(span["error"]) and -I32 <= span["error"] < I32):
                out.append(f"{where}: error {span['error']!r} not an int32 int")
            for k in _CORE_STR:
                if k in span and type(span[k]) is not str:
                    out.append(f"{where}: {k} is {type(span[k]).__name__}, not str")
            meta = span.get("meta", {})
            if type(meta) is not dict:
                out.append(f"{where}: meta is {type(meta).__name__}")
            else:
                for k, v in meta.items():
                    if type(k) is not str or type(v) is not str:
                        out.append(f"{where}: meta[{k!r}] is {type(v).__name__}, not str -> str")
            metrics = span.get("metrics", {})
            if type(metrics) is not dict:
                out.append(f"{where}: metrics is {type(metrics).__name__}")
            else:
                for k, v in metrics.items():
                    if type(k) is not str or type(v) not in (int, float):
                        out.append(f"{where}: metrics[{k!r}] = {v!r} not a number")
            if "meta_struct" in span:
                ms = span["meta_struct"]
                if type(ms) is not dict:
                    out.append(f"{where}: meta_struct is {type(ms).__name__}, not a map")
                else:
                    if not ms:
                        out.append(f"{where}: empty meta_struct (omit the key)")
                    for k, v in ms.items():
                        if type(v) is not bytes:
                            out.append(f"{where}: meta_struct[{k!r}] is {type(v).__name__}, "
                                       "must be bin")
                            continue
                        try:
                            msgpack.unpackb(v, raw=False, strict_map_key=False)
                        except Exception:  # noqa: BLE001
                            out.append(f"{where}: meta_struct[{k!r}] is not a msgpack document")
            if "span_links" in span:
                _check_links(where, span["span_links"], out)
            if "span_events" in span:
                _check_events(where, span["span_events"], out)
    return out


# -- the checker can fail -------------------------------------------------------------------

def _span(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "trace_id": 1, "span_id": 2, "parent_id": 0, "service": "s", "name": "n",
        "resource": "r", "type": "", "start": 1, "duration": 1, "error": 0,
        "meta": {"a": "b"}, "metrics": {"m": 1.5},
    }
    base.update(extra)
    return base


_GOOD_LINK = {"trace_id": 1, "trace_id_high": 2, "span_id": 3, "attributes": {"k": "v"},
              "tracestate": "dd=s:1", "flags": (1 << 31) | 1}
_GOOD_EVENT = {"name": "e", "time_unix_nano": 5, "attributes": {
    "s": {"type": 0, "string_value": "x"}, "b": {"type": 1, "bool_value": True},
    "i": {"type": 2, "int_value": 3}, "d": {"type": 3, "double_value": 2.0},
    "a": {"type": 4, "array_value": {"values": [{"type": 3, "double_value": 1.0}]}}}}

BAD = {
    "nil span_links": _span(span_links=None),
    "empty span_links": _span(span_links=[]),
    "nil span_events": _span(span_events=None),
    "empty span_events": _span(span_events=[]),
    "nil meta_struct": _span(meta_struct=None),
    "empty meta_struct": _span(meta_struct={}),
    "meta_struct str value": _span(meta_struct={"appsec": "not bin"}),
    "link trace_id float": _span(span_links=[{**_GOOD_LINK, "trace_id": 1.0}]),
    "link span_id negative": _span(span_links=[{**_GOOD_LINK, "span_id": -5}]),
    "link flags signed": _span(span_links=[{**_GOOD_LINK, "flags": -(1 << 31) + 1}]),
    "link flags too big": _span(span_links=[{**_GOOD_LINK, "flags": 1 << 32}]),
    "link attributes nil": _span(span_links=[{**_GOOD_LINK, "attributes": None}]),
    "link attributes bin": _span(span_links=[{**_GOOD_LINK, "attributes": b"x"}]),
    "link tracestate nil": _span(span_links=[{**_GOOD_LINK, "tracestate": None}]),
    "link tracestate bin": _span(span_links=[{**_GOOD_LINK, "tracestate": b"dd=s:1"}]),
    "event double as int": _span(span_events=[{**_GOOD_EVENT, "attributes": {
        "d": {"type": 3, "double_value": 2}}}]),
    "event time negative": _span(span_events=[{**_GOOD_EVENT, "time_unix_nano": -1}]),
    "event time float": _span(span_events=[{**_GOOD_EVENT, "time_unix_nano": 5.0}]),
    "event nested array": _span(span_events=[{**_GOOD_EVENT, "attributes": {
        "a": {"type": 4, "array_value": {"values": [
            {"type": 4, "array_value": {"values": []}}]}}}}]),
    "trace_id float": _span(trace_id=1.0),
    "span_id negative": _span(span_id=-1),
    "start float": _span(start=1.5),
    "service bin": _span(service=b"s"),
    "meta int value": _span(meta={"a": 1}),
    "meta nil": _span(meta=None),
    "metrics str value": _span(metrics={"m": "1"}),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_checker_rejects(case: str) -> None:
    body = msgpack.packb([[BAD[case]]], use_bin_type=True)
    assert strict_v04_violations(body), f"checker accepted {case}"


def test_checker_accepts_well_formed_newer_keys() -> None:
    span = _span(meta_struct={"appsec": msgpack.packb({"k": [1, 2]})}, span_links=[_GOOD_LINK],
                 span_events=[_GOOD_EVENT], trace_id=U64 - 1, parent_id=I64)
    assert strict_v04_violations(msgpack.packb([[span]], use_bin_type=True)) == []


# -- our exporter's bytes ---------------------------------------------------------------------

HIGH = (1 << 64) - 3  # a span id / low trace id with bit 63 set


def _link_event_spans() -> list[Any]:
    link_ctx = SpanContext(0xAAAA_0000_0000_0001_8000_0000_0000_0002, HIGH, True,
                           TraceFlags(1))
    unsampled = SpanContext(0x1234, 0x5678, True, TraceFlags(0))
    events = [
        Event("exception", {"exception.type": "KeyError", "exception.message": "boom",
                            "exception.escaped": False}, timestamp=1_700_000_000_100_000_000),
        Event("retry", {"attempt": 2, "delay": 1.0, "integral.float": 3.0, "ok": True,
                        "tags": ("a", "b"), "ints": (1, 2), "floats": (0.5, 2.0)},
              timestamp=1_700_000_000_150_000_000),
        Event("bare", None, timestamp=1_700_000_000_160_000_000),
    ]
    return [
        make_span("linked", kind=SpanKind.CONSUMER, trace_id=(HIGH << 64) | HIGH, span_id=HIGH,
                  links=[Link(link_ctx, {"peer": "x", "n": 3}), Link(unsampled)],
                  trace_state="dd=s:2;o:rum,other=1"),
        make_span("evented", kind=SpanKind.SERVER, span_id=0x1111, events=events,
                  status=Status(StatusCode.ERROR, "bad"),
                  attributes={"http.request.method": "GET", "http.response.status_code": 500}),
        make_span("plain", span_id=0x2222, parent_id=0x1111),
    ]


def _capture(spans: list[Any], api_version: str = "v0.4") -> list[bytes]:
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/traces"):
            bodies.append(request.content)
        return httpx.Response(200, json={"rate_by_service": {}})

    exp = DatadogSpanExporter(agent_url="http://127.0.0.1:9", api_version=api_version,
                              _environ={}, _transport=httpx.MockTransport(handler))
    try:
        exp.export(spans)
    finally:
        exp.shutdown()
    assert bodies, "the exporter sent nothing"
    return bodies


def _decoded(bodies: list[bytes]) -> list[dict[str, Any]]:
    return [s for b in bodies for t in msgpack.unpackb(b, raw=False, strict_map_key=False)
            for s in t]


@pytest.fixture(scope="module")
def parity_bodies() -> list[bytes]:
    spans, _ = build_parity_spans()
    return _capture(spans + _link_event_spans())


def test_exporter_v04_body_passes_strict_rules(parity_bodies: list[bytes]) -> None:
    problems = [p for b in parity_bodies for p in strict_v04_violations(b)]
    assert problems == [], "\n".join(problems[:50])


def test_empty_newer_keys_are_omitted(parity_bodies: list[bytes]) -> None:
    spans = _decoded(parity_bodies)
    assert len(spans) > 40
    for span in spans:
        for key in ("meta_struct", "span_links", "span_events"):
            if key in span:
                assert span[key], f"{span['name']}: {key} sent empty or nil: {span[key]!r}"
    plain = [s for s in spans if s["span_id"] == 0x2222]
    assert plain and not {"meta_struct", "span_links", "span_events"} & set(plain[0])


def test_ids_are_unsigned_64_bit(parity_bodies: list[bytes]) -> None:
    [linked] = [s for s in _decoded(parity_bodies) if s["span_id"] == HIGH]
    assert linked["trace_id"] == HIGH  # low 64 bits of a trace id with bit 127 and 63 set
    assert linked["meta"]["_dd.p.tid"] == f"{HIGH:016x}"


def test_links_and_events_are_not_lost(parity_bodies: list[bytes]) -> None:
    spans = {s["span_id"]: s for s in _decoded(parity_bodies)}
    linked, evented = spans[HIGH], spans[0x1111]
    if "span_links" in linked:
        links = linked["span_links"]
        assert [link["span_id"] for link in links] == [HIGH, 0x5678]
        assert links[0]["trace_id"] == 0x8000_0000_0000_0002
        assert links[0].get("trace_id_high") == 0xAAAA_0000_0000_0001
        assert links[0]["attributes"] == {"peer": "x", "n": "3"}
    else:
        links = json.loads(linked["meta"]["_dd.span_links"])
        assert [int(link["span_id"], 16) for link in links] == [HIGH, 0x5678]
        assert int(links[0]["trace_id"], 16) == 0xAAAA_0000_0000_0001_8000_0000_0000_0002
    if "span_events" in evented:
        by_name = {e["name"]: e for e in evented["span_events"]}
        assert set(by_name) == {"exception", "retry", "bare"}
        attrs = by_name["retry"]["attributes"]
        assert attrs["integral.float"] == {"type": 3, "double_value": 3.0}
        assert type(attrs["integral.float"]["double_value"]) is float
        assert attrs["attempt"] == {"type": 2, "int_value": 2}
    else:
        events = json.loads(evented["meta"]["events"])
        assert [e["name"] for e in events] == ["exception", "retry", "bare"]
        assert events[1]["attributes"]["integral.float"] == 3.0


def test_v05_body_is_well_formed() -> None:
    """v0.5 has no newer keys; check its own rules (wire.md §1.3): 12 fields, no nils."""
    spans, _ = build_parity_spans()
    for body in _capture(spans + _link_event_spans(), api_version="v0.5"):
        table, traces = msgpack.unpackb(body, raw=False, strict_map_key=False)
        assert table[0] == "" and all(type(s) is str for s in table)
        for trace in traces:
            for span in trace:
                assert len(span) == 12
                for i in (0, 1, 2, 11):
                    assert _is_int(span[i]) and 0 <= span[i] < len(table)
                for i in (3, 4, 5):
                    assert _is_int(span[i]) and 0 <= span[i] < U64
                assert _is_int(span[6]) and _is_int(span[7]) and _is_int(span[8])
                assert all(_is_int(k) and _is_int(v) and k < len(table) and v < len(table)
                           for k, v in span[9].items())
                assert all(_is_int(k) and k < len(table) and type(v) in (int, float)
                           for k, v in span[10].items())


def test_native_newer_keys_pass_strict_rules() -> None:
    """The encoder's native ``meta_struct`` / ``span_links`` / ``span_events`` path (the
    translation leaves them unset today): edge values must still decode under the strict rules."""
    from otel_dd_bridge.encoding import V04Encoder
    from otel_dd_bridge.model import DDSpan, DDSpanEvent, DDSpanLink, TraceChunk

    def span(span_id: int, **newer: Any) -> DDSpan:
        s = DDSpan(trace_id=HIGH, span_id=span_id, parent_id=0, service="svc", name="op",
                   resource="res", type="", start=1_700_000_000_000_000_000, duration=5,
                   error=0, meta={"k": "v"}, metrics={"m": 1})
        for k, v in newer.items():
            setattr(s, k, v)
        return s

    links = [DDSpanLink(trace_id=HIGH, span_id=HIGH, trace_id_high=HIGH,
                        attributes={"a": "b"}, tracestate="dd=s:1", flags=(1 << 31) | 1),
             DDSpanLink(trace_id=1, span_id=2)]
    events = [DDSpanEvent("e", 1_700_000_000_000_000_001, {
                  "f": 3.0, "i": 7, "b": False, "s": "x", "fs": [1.0, 2.0], "ss": ("a",)}),
              DDSpanEvent("bare", 0)]
    spans = [
        span(1, meta_struct={"appsec": msgpack.packb({"triggers": [1]})}, span_links=links,
             span_events=events),
        span(2, meta_struct={}, span_links=[], span_events=[]),  # empty: must be omitted
        span(3),  # None: must be omitted
    ]
    body = V04Encoder().encode([TraceChunk(spans=spans)])
    assert strict_v04_violations(body) == []
    decoded = {s["span_id"]: s for t in msgpack.unpackb(body, raw=False) for s in t}
    for sid in (2, 3):
        assert not {"meta_struct", "span_links", "span_events"} & set(decoded[sid])
    first = decoded[1]
    assert first["span_links"][0]["flags"] == (1 << 31) | 1
    assert first["span_links"][0]["trace_id_high"] == HIGH
    attrs = first["span_events"][0]["attributes"]
    assert attrs["f"] == {"type": 3, "double_value": 3.0}
    assert type(attrs["f"]["double_value"]) is float
    assert attrs["fs"]["array_value"]["values"][0] == {"type": 3, "double_value": 1.0}
    assert type(first["meta_struct"]["appsec"]) is bytes
