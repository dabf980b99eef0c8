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
    Case("TV6 old+new HTTP keys: new inserted first wins", "§5.6 step 3",
         dict(attributes={"http.request.method": "POST", "http.response.status_code": "201",
                          "http.method": "SHOULD NOT BE USED", "http.status_code": "SHOULD NOT"},
              status=Status(StatusCode.ERROR)),
         meta={"http.method": "POST", "http.status_code": "201", "error.msg": "201 Created"}),
    Case("TV7 status description", "§6.2 rule 1",
         dict(status=Status(StatusCode.ERROR, "Error number #24")),
         meta={"error.msg": "Error number #24"}, absent=("error.type", "error.stack")),
    Case("TV7 string 403", "§6.2 rule 2",
         dict(attributes={"http.response.status_code": "403"}, status=Status(StatusCode.ERROR)),
         meta={"error.msg": "403 Forbidden"}),
    Case("TV7 OTher event ignored", "§6.1",
         dict(status=Status(StatusCode.ERROR), events=[Event("OTher", {"exception.message": "x"})]),
         absent=("error.msg",)),
    Case("§6.2 code without Go text", "§6.2 rule 2",
         dict(attributes={"http.status_code": "599"}, status=Status(StatusCode.ERROR)),
         meta={"error.msg": "599", "http.status_code": "599"}),
    Case("TV8/N1 messaging resource", "§3.2",
         dict(attributes={"messaging.operation": "process", "messaging.destination.name": "Queue1",
                          "messaging.destination": "Queue2"}),
         fields=dict(resource="process Queue2"), options={"span_name_as_resource_name": True}),
    Case("TV8/N1 rpc resource", "§3.2", dict(attributes={"rpc.service": "SVC", "rpc.method": "M"}),
         fields=dict(resource="M SVC"), options={"span_name_as_resource_name": True}),
    Case("TV8/N1 graphql name alone ignored", "§3.2",
         dict(name="span-name", attributes={"graphql.operation.name": "myQuery"}),
         fields=dict(resource="span-name"), options={"span_name_as_resource_name": True}),
    Case("TV8/N1 graphql type and name", "§3.2",
         dict(attributes={"graphql.operation.type": "query", "graphql.operation.name": "myQuery"}),
         fields=dict(resource="query myQuery"), options={"span_name_as_resource_name": True}),
    Case("TV11 messaging resource", "§3.1 rule 3",
         dict(kind=SpanKind.CLIENT, attributes={"messaging.operation": "send",
                                               "messaging.destination": "example.com"}),
         fields=dict(resource="send example.com")),
    Case("TV11 graphql server", "§2.3 row 10, §3.1 rule 5",
         dict(kind=SpanKind.SERVER, attributes={"graphql.operation.type": "query",
                                               "graphql.operation.name": "myQuery"}),
         fields=dict(resource="query myQuery", name="graphql.server.request")),
    Case("TV11 resource.name override", "§3.1 rule 1",
         dict(kind=SpanKind.SERVER, attributes={"resource.name": "custom-resource",
                                               "http.request.method": "GET"}),
         fields=dict(resource="custom-resource")),
    Case("TV11 db.system only uses span name", "§3.1 rule 7",
         dict(name="conn", kind=SpanKind.CLIENT, attributes={"db.system": "mysql"}),
         fields=dict(resource="conn")),
    Case("TV10 faas client", "§2.3 row 8",
         dict(kind=SpanKind.CLIENT, attributes={"faas.invoked_provider": "gcp",
                                               "faas.invoked_name": "foo"}),
         fields=dict(name="gcp.foo.invoke")),
    Case("TV10 faas server", "§2.3 row 9", dict(kind=SpanKind.SERVER,
                                                attributes={"faas.trigger": "timer"}),
         fields=dict(name="timer.invoke")),
    Case("TV10 network protocol", "§2.3 row 11",
         dict(kind=SpanKind.SERVER, attributes={"network.protocol.name": "tcp"}),
         fields=dict(name="tcp.server.request")),
    Case("TV10 db.system on SERVER falls through", "§2.3 note",
         dict(kind=SpanKind.SERVER, attributes={"db.system": "postgresql"}),
         fields=dict(name="server.request", type="web")),
    Case("TV10 span db.system beats resource", "§0.2",
         dict(kind=SpanKind.CLIENT, attributes={"db.system": "postgresql"},
              resource={"db.system": "mysql"}),
         fields=dict(name="postgresql.query")),
    Case("TV10 messaging on INTERNAL", "§2.3 row 4 kinds",
         dict(attributes={"messaging.system": "kafka", "messaging.operation": "send"}),
         fields=dict(name="Internal")),
    Case("TV12 N1 client without scope", "§2.2 step 3",
         dict(kind=SpanKind.CLIENT, scope=None), fields=dict(name="opentelemetry.client"),
         options={"span_name_remappings": {"a": "b"}}),
    Case("TV12 N1 scope spring", "§2.2 step 3", dict(kind=SpanKind.SERVER, scope=("spring", "")),
         fields=dict(name="spring.server"), options={"span_name_remappings": {"a": "b"}}),
    Case("TV12 N1 remapping", "§2.2 step 4", dict(scope=None),
         fields=dict(name="internal_op"),
         options={"span_name_remappings": {"opentelemetry.internal": "internal_op"}}),
    Case("TV12 invalid operation.name", "§5.5 NormalizeName",
         dict(attributes={"operation.name": "%$^"}), fields=dict(name="unnamed_operation")),
    Case("TV12 long operation.name", "§5.5", dict(attributes={"operation.name": "a" * 101}),
         fields=dict(name="a" * 100)),
    Case("TV12 long service", "§5.5", dict(resource={"service.name": "a" * 101}),
         fields=dict(service="a" * 100)),
    Case("TV13 span env beats resource, same key", "§1.2",
         dict(resource={"deployment.environment.name": "env-res"},
              attributes={"deployment.environment.name": "env-span"}), meta={"env": "env-span"}),
    Case("TV13 literal span env wins", "§1.2 step 1",
         dict(resource={"deployment.environment.name": "x"}, attributes={"env": "lit"}),
         meta={"env": "lit"}),
    Case("TV13 span version beats resource", "§1.3",
         dict(resource={"service.version": "v4"}, attributes={"service.version": "v3"}),
         meta={"version": "v3"}),
    Case("§1.3 numeric service.version gives no version", "§0.2 typed",
         dict(resource={"service.version": 2}), meta={"service.version": "2"}, absent=("version",)),
    Case("TV14 span beats resource same key", "§5.2",
         dict(attributes={"http.status_code": 201}, resource={"http.status_code": 500}),
         metrics={"http.status_code": 201}),
    Case("TV15 sampling priority 3 gets no dm", "§7.2",
         dict(attributes={"_sampling_priority_v1": 3}), metrics={"_sampling_priority_v1": 3},
         absent=("_dd.p.dm",)),
    Case("TV15 sampling.priority -1", "§7.2", dict(attributes={"sampling.priority": -1}),
         metrics={"_sampling_priority_v1": -1}, absent=("sampling.priority",)),
    Case("TV18 root client by kind", "§7.3", dict(kind=SpanKind.CLIENT),
         metrics={"_top_level": 1, "_dd.measured": 1}),
    Case("TV18 child producer measured", "§7.3", dict(kind=SpanKind.PRODUCER, parent_id=1),
         metrics={"_dd.measured": 1}, absent=("_top_level",)),
    Case("TV18 string _dd.measured does not count", "§0.2 typed",
         dict(parent_id=1, attributes={"_dd.measured": "1"}), absent=("_top_level",),
         meta={"_dd.measured": "1"}),
    Case("classic: span-level service override is top-level", "§7.3 classic",
         dict(parent_id=1, attributes={"service.name": "other"}, resource={"service.name": "main"}),
         metrics={"_top_level": 1}, options={"top_level": "classic"}),
    Case("TV20 existing db.name wins", "§5.3 db.name",
         dict(attributes={"db.name": "mine"}, resource={"db.namespace": "ns"}),
         meta={"db.name": "mine", "db.namespace": "ns"}),
    Case("TV20 db keys kept", "§5.1",
         dict(kind=SpanKind.CLIENT, attributes={"db.system": "mysql", "db.query.text": "Q",
                                               "db.collection.name": "c", "db.operation.name": "o"}),
         meta={"db.query.text": "Q", "db.collection.name": "c", "db.operation.name": "o"}),
    Case("header prefix remap", "§5.1",
         dict(attributes={"http.request.header.x-id": ("1",)}),
         meta={"http.request.headers.x-id": '["1"]'}),
    Case("sample rate attribute", "§5.3 _sample_rate", dict(attributes={"_sample_rate": 0.5}),
         metrics={"_sample_rate": 0.5}),
    Case("bytes as base64", "§5.1", dict(attributes={"raw": b"\x00\x01"}), meta={"raw": "AAE="}),
    Case("map-like JSON number formatting", "§5.1 Go floats",
         dict(attributes={"f": (1e21, 1e-7, 0.5, 100.0)}), meta={"f": "[1e+21,1e-7,0.5,100]"}),
    Case("huge meta value truncated", "§5.5 meta value",
         dict(attributes={"big": "x" * 30000}), meta={"big": "x" * 25000 + "..."}),
    Case("long key truncated", "§5.5 meta key", dict(attributes={"k" * 250: "v"}),
         meta={"k" * 200 + "...": "v"}),
    Case("invalid http.status_code meta removed", "§5.5",
         dict(attributes={"http.status_code": "abc"}), absent=("http.status_code",)),
    Case("non-finite metrics dropped", "UNCERTAIN choice: non-finite metrics dropped",
         dict(attributes={"nan": float("nan"), "inf": float("inf")}), absent=("nan", "inf")),
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


def test_tv16_link_with_tracestate_and_dropped_count() -> None:
    from opentelemetry.trace import TraceState

    ctx = SpanContext(0xFEDCBA98765432100123456789ABCDEF, 0xABCDEF0123456789, False,
                      TraceFlags(1), TraceState([("dd", "asdf256")]))
    # a link as the SDK hands it over, with 42 attributes dropped by the span limits
    link_with_drops = type("L", (), {"context": ctx, "attributes": {"k1": "v1"},
                                     "dropped_attributes": 42})()
    [chunk] = translate_spans([make_span(links=[link_with_drops])], TranslateOptions())
    assert chunk.spans[0].meta["_dd.span_links"] == (
        '[{"trace_id":"fedcba98765432100123456789abcdef","span_id":"abcdef0123456789",'
        '"tracestate":"dd=asdf256","attributes":{"k1":"v1"},"dropped_attributes_count":42}]'
    )


def test_tv17_events_variants() -> None:
    evs = [Event("", {"message": "OOM"}, timestamp=0), Event("boom", timestamp=0)]
    [chunk] = translate_spans([make_span(events=evs)], TranslateOptions())
    assert chunk.spans[0].meta["events"] == '[{"attributes":{"message":"OOM"}},{"name":"boom"}]'


def test_tv19_payload_fields_and_chunks() -> None:
    res = Resource({"service.name": "s", "deployment.environment": "depenv",
                    "k8s.pod.uid": "1234cid", "host.name": "node-7",
                    "telemetry.sdk.language": "python", "telemetry.sdk.version": "1.45.1"})
    spans = [make_span(span_id=1, resource=res), make_span(span_id=2, resource=res),
             make_span(trace_id=99, span_id=3, resource=res)]
    chunks = translate_spans(spans, TranslateOptions())
    assert len(chunks) == 2
    p = chunks[0].payload
    assert p is not None and p is chunks[1].payload  # computed once per resource
    assert (p.env, p.container_id, p.hostname, p.tracer_version) == (
        "depenv", "1234cid", "node-7", "otlp-1.45.1")


def test_tv19_container_tags_and_tv13_container_id() -> None:
    res = Resource({"k8s.pod.uid": "1234cid", "k8s.job.name": "kubejob",
                    "container.image.name": "lorem-ipsum", "container.image.tag": "v2.0",
                    "datadog.container.tag.team": "otel"})
    span = make_span(resource=res, attributes={"k8s.container.name": "span-level-ignored"})
    p = translate_spans([span], TranslateOptions())[0].payload
    assert p is not None
    assert p.container_id == "1234cid"
    assert p.tags == {"kube_job": "kubejob", "image_name": "lorem-ipsum", "image_tag": "v2.0",
                      "team": "otel"}
    p2 = translate_spans([make_span(resource={"container.id": "  CID "})], TranslateOptions())[0]
    assert p2.payload is not None and p2.payload.container_id == "_cid"


def test_resource_work_is_cached_per_resource() -> None:
    from otel_dd_bridge.translate import _Cache, translate_spans_with_stats

    res = Resource({"service.name": "s"})
    cache = _Cache(4)
    translate_spans_with_stats([make_span(resource=res)] * 3, TranslateOptions(), _cache=cache)
    assert len(cache.resources) == 1
    for i in range(10):
        translate_spans_with_stats([make_span(resource=Resource({"i": i}))], TranslateOptions(),
                                   _cache=cache)
    assert len(cache.resources) <= 4  # bounded


@pytest.mark.parametrize("v", [0, 1, 0xABC, 2**63, 2**64 - 1, 2**64, 2**127 + 5, 2**128 - 1,
                               2**128, 2**130 + 7, -1, -(2**70)])
def test_hex_helpers_match_format_specs(v: int) -> None:
    from otel_dd_bridge.translate import _hex

    assert _hex(v, 16) == f"{v:032x}"
    assert _hex(v, 8) == f"{v:016x}"


def test_trace_states_read_once_per_object_stay_per_span() -> None:
    """The translation reuses the last TraceState it read (spans of a trace share the object):
    spans with different states in one batch still get their own tags and chunk context."""
    from opentelemetry.trace import TraceState

    a = TraceState([("dd", "s:2;o:rum;t.dm:-4"), ("vendor", "x")])
    b = TraceState([("other", "y")])
    spans = []
    for i, ts in enumerate([a, a, None, b, a]):
        s = make_span(f"s{i}", trace_id=100 + i, span_id=1 + i)
        if ts is not None:
            ctx = s.context
            s._context = SpanContext(ctx.trace_id, ctx.span_id, False, ctx.trace_flags, ts)
        spans.append(s)
    chunks = translate_spans(spans, TranslateOptions())
    by_name = {c.spans[0].resource: c for c in chunks}  # resource = span name here
    meta = {n: c.spans[0].meta for n, c in by_name.items()}
    assert meta["s0"]["w3c.tracestate"] == meta["s1"]["w3c.tracestate"] == meta["s4"][
        "w3c.tracestate"] == "dd=s:2;o:rum;t.dm:-4,vendor=x"
    assert "w3c.tracestate" not in meta["s2"]
    assert meta["s3"]["w3c.tracestate"] == "other=y"
    assert [by_name[n].priority for n in ("s0", "s1", "s2", "s3", "s4")] == [2, 2, 1, 1, 2]
    assert meta["s0"]["_dd.origin"] == meta["s4"]["_dd.origin"] == "rum"
    assert "_dd.origin" not in meta["s3"] and "_dd.origin" not in meta["s2"]


@pytest.mark.parametrize("s", ["plain", "<a&b>", "line\nbreak\t\"q\"\\", "ünï\u2028c\u2029d",
                               "\x00\x1f\x7f", "🙂 emoji", ""])
def test_json_strings_are_go_json_marshal(s: str) -> None:
    """Event/link JSON strings: json.dumps(ensure_ascii=False) output with Go's extra escapes."""
    import json

    from otel_dd_bridge.translate import _json_str

    want = json.dumps(s, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        want = want.replace(ch, esc)
    assert _json_str(s) == want
    assert json.loads(_json_str(s)) == s
