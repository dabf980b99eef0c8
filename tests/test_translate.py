"""Named translation cases: each states the rule of spec/translation.md it checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from otel_dd_bridge.translate import TranslateOptions, translate_spans, translate_spans_with_stats
from tests.spans import SPAN_ID, make_span

LOW = 2594128270069917171


@dataclass
class Case:
    name: str
    rule: str
    span: dict[str, Any]
    fields: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)  # subset that must match
    metrics: dict[str, float] = field(default_factory=dict)
    absent: tuple[str, ...] = ()  # meta/metrics keys that must not exist
    options: dict[str, Any] = field(default_factory=dict)


EXC = Event("exception", {"exception.message": "Out of memory", "exception.type": "mem",
                          "exception.stacktrace": "1/2/3"}, timestamp=456)

CASES = [
    Case("TV1 full server span", "§1-§8 (TV1)",
         dict(name="/path", kind=SpanKind.SERVER, trace_state="state=1",
              resource={"service.name": "pylons", "service.version": "v1.2.3", "env": "staging"},
              attributes={"name": "john", "approx": 1.2, "count": 2},
              status=Status(StatusCode.ERROR, "Error"),
              events=[Event("boom", {"key": "Out of memory", "accuracy": 2.4}, timestamp=123), EXC]),
         fields=dict(service="pylons", name="server.request", resource="/path", type="web",
                     error=1, trace_id=LOW, span_id=LOW, parent_id=0),
         meta={"name": "john", "env": "staging", "service.version": "v1.2.3", "version": "v1.2.3",
               "otel.trace_id": "72df520af2bde7a5240031ead750e5f3", "otel.status_code": "Error",
               "otel.status_description": "Error", "otel.library.name": "ddtracer",
               "otel.library.version": "v2", "otel.scope.name": "ddtracer",
               "w3c.tracestate": "state=1", "span.kind": "server",
               "_dd.span_events.has_exception": "true", "error.msg": "Out of memory",
               "error.type": "mem", "error.stack": "1/2/3",
               "_dd.p.tid": "72df520af2bde7a5", "_dd.p.dm": "-9"},
         metrics={"approx": 1.2, "count": 2, "_top_level": 1, "_sampling_priority_v1": 1}),
    Case("TV1 error tags off", "§6.1 option error_tags_from_events=False",
         dict(kind=SpanKind.SERVER, status=Status(StatusCode.ERROR, "Error"), events=[EXC]),
         meta={"error.msg": "Error"}, absent=("error.type", "error.stack"),
         options={"error_tags_from_events": False}),
    Case("TV2 http server resource", "§2.3 row 2, §3.1 rule 2",
         dict(kind=SpanKind.SERVER, resource={"service.name": "myservice", "peer.service": "p"},
              attributes={"peer.service": "userbase", "deployment.environment": "prod",
                          "http.method": "GET", "http.route": "/path"}),
         fields=dict(name="http.server.request", resource="GET /path", service="myservice"),
         meta={"env": "prod", "peer.service": "userbase", "http.method": "GET"}),
    Case("TV3 span service.name, analytics.event", "§1.1, §5.1",
         dict(kind=SpanKind.SERVER, resource={"service.name": "myservice"},
              attributes={"service.name": "pylons", "analytics.event": "false"}),
         fields=dict(service="pylons"), metrics={"_dd1.sr.eausr": 0}, absent=("analytics.event",)),
    Case("TV4 explicit overrides", "§2.1, §3.1 rule 1, §4",
         dict(attributes={"operation.name": "READ", "resource.name": "/path", "span.type": "db",
                          "service.name": "mongo", "analytics.event": True}),
         fields=dict(service="mongo", name="read", resource="/path", type="db"),
         metrics={"_dd1.sr.eausr": 1}, absent=("operation.name", "resource.name", "span.type")),
    Case("TV5 HTTP error without message", "§6.2 status-code fallback, Go text",
         dict(attributes={"http.request.method": "POST", "http.route": "/u/:id",
                          "http.response.status_code": "201", "error.type": "WSD"},
              status=Status(StatusCode.ERROR)),
         fields=dict(resource="POST", type="custom", error=1),
         meta={"http.method": "POST", "http.status_code": "201", "error.msg": "201 Created",
               "error.type": "WSD"}, absent=("http.request.method",)),
    Case("TV7 int status code gives no message", "§6.2",
         dict(attributes={"http.response.status_code": 403}, status=Status(StatusCode.ERROR)),
         absent=("error.msg",), metrics={"http.status_code": 403}),
    Case("TV7 EXCEPTION upper case", "§6.1 case-insensitive, §5.3 exact",
         dict(status=Status(StatusCode.ERROR),
              events=[Event("EXCEPTION", {"exception.message": "Out of memory"})]),
         meta={"error.msg": "Out of memory"}, absent=("_dd.span_events.has_exception",)),
    Case("TV7 OK status ignores exception", "§6",
         dict(status=Status(StatusCode.OK), events=[EXC]),
         fields=dict(error=0), absent=("error.msg",), meta={"otel.status_code": "Ok"}),
    Case("5xx without ERROR is not an error", "§6 no inference",
         dict(kind=SpanKind.SERVER, attributes={"http.request.method": "GET",
                                               "http.response.status_code": 503}),
         fields=dict(error=0), metrics={"http.status_code": 503}),
    Case("TV9 postgresql CLIENT", "§4 db table, §2.3 row 3, §3.1 rule 6",
         dict(kind=SpanKind.CLIENT, attributes={"db.system": "postgresql",
                                               "db.statement": "SELECT 1"}),
         fields=dict(type="sql", name="postgresql.query", resource="SELECT 1"),
         metrics={"_dd.measured": 1}, absent=("_top_level",) and ()),
    Case("TV9 postgres is db", "§4", dict(kind=SpanKind.CLIENT, attributes={"db.system": "postgres"}),
         fields=dict(type="db")),
    Case("TV9 redis", "§4", dict(kind=SpanKind.CLIENT, attributes={"db.system.name": "redis"}),
         fields=dict(type="redis", name="redis.query")),
    Case("TV10 kafka", "§2.3 row 4",
         dict(kind=SpanKind.PRODUCER, attributes={"messaging.system": "kafka",
                                                 "messaging.operation": "send",
                                                 "messaging.destination.name": "orders"}),
         fields=dict(name="kafka.send", resource="send orders", type="custom")),
    Case("TV10 aws-api server normalized", "§2.3 row 7, §5.5 NormalizeName",
         dict(kind=SpanKind.SERVER, attributes={"rpc.system": "aws-api"}),
         fields=dict(name="aws_api.server.request")),
    Case("TV10 aws s3 client", "§2.3 row 5",
         dict(kind=SpanKind.CLIENT, attributes={"rpc.system": "aws-api", "rpc.service": "s3"}),
         fields=dict(name="aws.s3.request")),
    Case("TV10 grpc client", "§2.3 row 6, §3.1 rule 4",
         dict(kind=SpanKind.CLIENT, attributes={"rpc.system": "grpc", "rpc.method": "Get",
                                               "rpc.service": "Svc", "rpc.grpc.status_code": 5}),
         fields=dict(name="grpc.client.request", resource="Get Svc"),
         meta={"rpc.grpc.status_code": "5"}),
    Case("TV10 producer fallback", "§2.3 row 13", dict(kind=SpanKind.PRODUCER),
         fields=dict(name="Producer")),
    Case("TV10 internal fallback", "§2.3 row 13", dict(), fields=dict(name="Internal", type="custom")),
    Case("TV11 client url.template", "§3.1 rule 2 CLIENT",
         dict(kind=SpanKind.CLIENT, attributes={"http.request.method": "GET",
                                               "url.template": "/users/{id}", "http.route": "/x"}),
         fields=dict(resource="GET /users/{id}", name="http.client.request", type="http")),
    Case("TV11 _OTHER", "§3.1 rule 2",
         dict(kind=SpanKind.CLIENT, attributes={"http.request.method": "_OTHER"}),
         fields=dict(resource="HTTP")),
    Case("TV11 db.statement beats db.query.text", "§3.1 rule 6",
         dict(kind=SpanKind.CLIENT, attributes={"db.system": "mysql", "db.query.text": "B",
                                               "db.statement": "A"}),
         fields=dict(resource="A")),
    Case("TV12 service normalization", "§5.5 service",
         dict(resource={"service.name": "%$^"}), fields=dict(service="unnamed-service")),
    Case("TV12 no service", "§1.1", dict(resource={}), fields=dict(service="otlpresourcenoservicename")),
    Case("TV13 env normalization", "§1.2",
         dict(resource={"deployment.environment.name": "  ENV "}), meta={"env": "_env"}),
    Case("TV13 resource .name beats span deployment.environment", "§0.2 key order",
         dict(resource={"deployment.environment.name": "a"},
              attributes={"deployment.environment": "b"}), meta={"env": "a"}),
    Case("TV13 version", "§1.3", dict(resource={"service.version": "  V1 "}), meta={"version": "_v1"}),
    Case("TV14 status code old key first", "§5.2",
         dict(attributes={"http.status_code": 200, "http.response.status_code": 201}),
         metrics={"http.status_code": 200}),
    Case("TV14 status code from resource", "§5.2",
         dict(resource={"http.response.status_code": 404}), metrics={"http.status_code": 404}),
    Case("TV15 user priority", "§7.2",
         dict(attributes={"sampling.priority": 2}), metrics={"_sampling_priority_v1": 2},
         meta={"_dd.p.dm": "-4"}),
    Case("TV15 user reject has no dm", "§7.2",
         dict(attributes={"_sampling_priority_v1": -1}), metrics={"_sampling_priority_v1": -1},
         absent=("_dd.p.dm",)),
    Case("TV18 child client measured", "§7.3 by kind",
         dict(kind=SpanKind.CLIENT, parent_id=1), metrics={"_dd.measured": 1},
         absent=("_top_level",)),
    Case("TV18 child consumer top-level", "§7.3 by kind",
         dict(kind=SpanKind.CONSUMER, parent_id=1), metrics={"_top_level": 1},
         absent=("_dd.measured",)),
    Case("TV18 child internal", "§7.3", dict(parent_id=1), absent=("_top_level", "_dd.measured")),
    Case("classic: remote parent is top-level", "§7.3 classic",
         dict(kind=SpanKind.CLIENT, parent_id=1, parent_remote=True),
         metrics={"_top_level": 1}, absent=("_dd.measured",), options={"top_level": "classic"}),
    Case("classic: local child", "§7.3 classic", dict(kind=SpanKind.SERVER, parent_id=1),
         absent=("_top_level",), options={"top_level": "classic"}),
    Case("measured attribute", "§7.3 last row", dict(parent_id=1, attributes={"_dd.measured": 1}),
         metrics={"_dd.measured": 1}),
    Case("TV20 key mapping", "§5.1",
         dict(attributes={"server.address": "h", "client.address": "c", "url.full": "u",
                          "user_agent.original": "ua", "network.protocol.version": "1.1",
                          "net.peer.port": 80}, resource={"db.namespace": "prod_db"}),
         meta={"http.server_name": "h", "http.client_ip": "c", "http.url": "u",
               "http.useragent": "ua", "http.version": "1.1", "db.name": "prod_db",
               "db.namespace": "prod_db"},
         metrics={"net.peer.port": 80}, absent=("server.address", "url.full")),
    Case("value types", "§5.1 conversions",
         dict(attributes={"b": True, "arr": ("a", "b"), "nums": (1.0, 2.5), "i": 3}),
         meta={"b": "true", "arr": '["a","b"]', "nums": "[1,2.5]"}, metrics={"i": 3}),
    Case("hostname from resource on root", "§1.4, D4",
         dict(resource={"host.name": "web-1"}), meta={"_dd.hostname": "web-1", "host.name": "web-1"}),
    Case("localhost rejected as hostname", "§1.4",
         dict(resource={"host.name": "localhost"}), absent=("_dd.hostname",)),
    Case("gen_ai forces llm type", "§4", dict(kind=SpanKind.CLIENT, attributes={"gen_ai.system": "x",
                                                                               "span.type": "web"}),
         fields=dict(type="llm")),
    Case("V1 naming by option", "§2.2",
         dict(kind=SpanKind.SERVER, attributes={"http.method": "GET", "http.route": "/r"}),
         fields=dict(name="ddtracer.server", resource="GET /r"),
         options={"span_name_remappings": {"x": "y"}}),
    Case("V1 span name as name", "§2.2 step 2",
         dict(name="my-op", kind=SpanKind.SERVER), fields=dict(name="my_op"),
         options={"span_name_as_resource_name": True}),
    Case("configured service overrides resource", "config service",
         dict(resource={"service.name": "res"}), fields=dict(service="cfg"),
         options={"service": "cfg", "env": "E1", "tags": {"team": "t", "env": "zzz"}},
         meta={"env": "e1", "team": "t"}),
]


def _translate(case: Case):
    return translate_spans([make_span(**case.span)], TranslateOptions(**case.options))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_named_case(case: Case) -> None:
    [chunk] = _translate(case)
    [dd] = chunk.spans
    got_fields = {k: getattr(dd, k) for k in case.fields}
    assert got_fields == case.fields, f"{case.rule}: fields differ"
    got_meta = {k: dd.meta.get(k) for k in case.meta}
    assert got_meta == case.meta, f"{case.rule}: meta differs (full meta: {dd.meta})"
    got_metrics = {k: dd.metrics.get(k) for k in case.metrics}
    assert got_metrics == case.metrics, f"{case.rule}: metrics differ (full: {dd.metrics})"
    for key in case.absent:
        assert key not in dd.meta and key not in dd.metrics, f"{case.rule}: {key} must be absent"


def test_events_and_links_json() -> None:
    link_ctx = SpanContext(0xFEDCBA98765432100123456789ABCDEF, 0xABCDEF0123456789, False,
                           TraceFlags(1))
    span = make_span(events=[Event("boom", {"message": "OOM", "f": 2.0}, timestamp=5)],
                     links=[Link(link_ctx, {"k1": "v1"})])
    [chunk] = translate_spans([span], TranslateOptions())
    meta = chunk.spans[0].meta
    assert meta["events"] == '[{"time_unix_nano":5,"name":"boom","attributes":{"message":"OOM","f":2}}]'
    assert meta["_dd.span_links"] == (
        '[{"trace_id":"fedcba98765432100123456789abcdef","span_id":"abcdef0123456789",'
        '"attributes":{"k1":"v1"}}]'
    )


def test_chunks_group_by_trace_and_tid_on_first_span_only() -> None:
    res = Resource({"service.name": "s"})
    spans = [make_span(span_id=1, resource=res), make_span(span_id=2, parent_id=1, resource=res),
             make_span(trace_id=5, span_id=3, resource=res)]
    chunks = translate_spans(spans, TranslateOptions())
    assert [len(c.spans) for c in chunks] == [2, 1]
    assert chunks[0].spans[0].meta["_dd.p.tid"] == "72df520af2bde7a5"
    assert "_dd.p.tid" not in chunks[0].spans[1].meta
    assert "_dd.p.tid" not in chunks[1].spans[0].meta  # upper bits are zero
    assert chunks[0].spans[1].parent_id == 1


def test_zero_ids_are_dropped_and_counted() -> None:
    res = translate_spans_with_stats([make_span(trace_id=1 << 64), make_span()], TranslateOptions())
    assert res.dropped == 1 and len(res.chunks) == 1


def test_hooks_override_and_failing_hook_is_ignored() -> None:
    def boom(span, dd):
        raise RuntimeError("x")

    opts = TranslateOptions(name_hook=lambda s, d: "Custom Op", resource_hook=boom,
                            service_hook=lambda s, d: None)
    res = translate_spans_with_stats([make_span(name="n")], opts)
    dd = res.chunks[0].spans[0]
    assert dd.name == "Custom_Op" and dd.resource == "n" and res.hook_errors == 1


def test_probabilistic_sampling() -> None:
    keep = translate_spans([make_span(trace_id=123)], TranslateOptions(sampling_percentage=50))[0]
    drop = translate_spans([make_span(trace_id=1237892138897)],
                           TranslateOptions(sampling_percentage=50))[0]
    assert keep.priority == 1 and keep.spans[0].meta["_dd.p.dm"] == "-9"
    assert drop.priority == 0 and "_dd.p.dm" not in drop.spans[0].meta
    assert keep.tags["_dd.otlp_sr"] == "0.50"


def test_private_and_public_attribute_paths_agree() -> None:
    span = make_span(kind=SpanKind.SERVER, attributes={"http.method": "GET", "x": 1, "y": "z"})
    fast = translate_spans([span], TranslateOptions())[0].spans[0]

    class PublicOnly:
        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            return getattr(self._inner, name)

        @property
        def _attributes(self):  # hide the private dict
            return None

    slow = translate_spans([PublicOnly(span)], TranslateOptions())[0].spans[0]  # type: ignore[list-item]
    assert fast == slow


attr_values = st.one_of(
    st.text(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(), st.booleans(),
    st.binary(max_size=20), st.lists(st.text(max_size=5), max_size=3).map(tuple),
    st.integers(min_value=1, max_value=30000).map(lambda n: "é" * n),
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=250), attr_values, max_size=8), st.text(), st.text())
def test_property_output_always_valid(attrs, name, svc) -> None:
    span = make_span(name=name, kind=SpanKind.SERVER, attributes=attrs,
                     resource={"service.name": svc})
    [chunk] = translate_spans([span], TranslateOptions())
    dd = chunk.spans[0]
    assert 0 < len(dd.service.encode()) <= 100
    assert 0 < len(dd.name.encode()) <= 100
    assert len(dd.resource.encode("utf-8", "surrogatepass")) <= 5000
    for k, v in dd.meta.items():
        assert isinstance(k, str) and isinstance(v, str)
        assert len(k.encode("utf-8", "surrogatepass")) <= 203
        assert len(v.encode("utf-8", "surrogatepass")) <= 25003
    for k, v in dd.metrics.items():
        assert isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
    assert dd.span_id == SPAN_ID
