"""Client-side stats: concentrator rules, buckets, bounds, encoding and the writer.

Payload bytes are decoded with ``msgpack`` and the ``ddsketch`` package's protobuf classes,
never with our own encoder's structures.
"""

from __future__ import annotations

import gzip
import math
import os
import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any

import httpx
import msgpack
import pytest
from ddsketch.pb.ddsketch_pb2 import DDSketch as SketchProto
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_dd_bridge._telemetry import ExportCounters
from otel_dd_bridge.config import parse_agent_url
from otel_dd_bridge.ddsketch import RELATIVE_ACCURACY
from otel_dd_bridge.encoding.stats_msgpack import (
    encode_client_stats,
    encode_stats_payload,
    plan_intake_payloads,
    split_client_payload,
)
from otel_dd_bridge.model import DDSpan, PayloadInfo, TraceChunk
from otel_dd_bridge.stats import (
    BUCKET_NS,
    DEFAULT_PEER_TAG_KEYS,
    TRACER_BLOCKED_VALUE,
    ClientStatsPayload,
    GroupedStats,
    SpanConcentrator,
    StatsBucket,
    StatsLimits,
    quantize_peer_ip_addresses,
    stats_resource_obfuscator,
)
from otel_dd_bridge.stats_writer import AgentStatsSink, IntakeStatsSink, StatsWriter
from otel_dd_bridge.translate import TranslateOptions, translate_spans
from otel_dd_bridge.transport import HttpTransport
from tests.spans import make_span

B = BUCKET_NS
T0 = 1_800_000_000 * 10**9  # aligned on 10 s


class Clock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def dd(
    *, service: str = "svc", name: str = "op", resource: str = "res", type: str = "",
    start: int = T0, duration: int = 1_000_000, error: int = 0, parent_id: int = 0,
    span_id: int = 1, meta: dict[str, str] | None = None,
    metrics: dict[str, float | int] | None = None, top: bool = True,
) -> DDSpan:
    m: dict[str, float | int] = {"_top_level": 1} if top else {}
    m.update(metrics or {})
    return DDSpan(trace_id=1, span_id=span_id, parent_id=parent_id, service=service, name=name,
                  resource=resource, type=type, start=start, duration=duration, error=error,
                  meta=dict(meta or {}), metrics=m)


def chunk(*spans: DDSpan, env: str = "prod", version: str = "1.0", origin: str = "") -> TraceChunk:
    return TraceChunk(spans=list(spans), priority=1, origin=origin,
                      payload=PayloadInfo(env=env, app_version=version))


def conc(clock: Clock | None = None, **kw: Any) -> SpanConcentrator:
    return SpanConcentrator(clock=clock or Clock(), **kw)


def groups(c: SpanConcentrator, force: bool = True) -> list[GroupedStats]:
    return [g for p in c.flush(force=force) for b in p.stats for g in b.stats]


def sketch(raw: bytes) -> SketchProto:
    msg = SketchProto()
    msg.ParseFromString(raw)
    return msg


def sketch_count(raw: bytes) -> float:
    msg = sketch(raw)
    return float(msg.zeroCount + sum(msg.positiveValues.contiguousBinCounts))


# --------------------------------------------------------------------------- eligibility


@pytest.mark.parametrize("metrics,meta,eligible", [
    ({"_top_level": 1}, {}, True),
    ({"_dd.top_level": 1}, {}, True),
    ({"_dd.measured": 1}, {}, True),
    ({}, {"span.kind": "server"}, True),
    ({}, {"span.kind": "client"}, True),
    ({}, {"span.kind": "PRODUCER"}, True),
    ({}, {"span.kind": "consumer"}, True),
    ({}, {"span.kind": "internal"}, False),
    ({}, {}, False),
    ({"_dd.measured": 0, "_top_level": 0}, {}, False),
    ({"_top_level": 1, "_dd.partial_version": 0}, {}, False),
    ({"_top_level": 1, "_dd.partial_version": 3}, {}, False),
    ({"_top_level": 1, "_dd.partial_version": -1}, {}, True),
])
def test_eligibility(metrics: dict[str, float], meta: dict[str, str], eligible: bool) -> None:
    c = conc()
    c.add_chunks([chunk(dd(top=False, metrics=metrics, meta=meta))])
    assert sum(g.hits for g in groups(c)) == (1 if eligible else 0)
    assert c.counters()["spans_ignored"] == (0 if eligible else 1)


def test_span_kinds_from_agent_info_replace_the_default() -> None:
    c = conc(span_kinds=["server"])
    c.add_chunks([chunk(dd(top=False, meta={"span.kind": "client"}),
                        dd(top=False, meta={"span.kind": "Server"}))])
    assert [g.span_kind for g in groups(c)] == ["Server"]


def test_top_level_hits_errors_duration_and_sketches() -> None:
    c = conc()
    durations = [1_000_000 * (i + 1) for i in range(100)]
    spans = [dd(duration=d, error=1 if i % 10 == 0 else 0, span_id=i + 1)
             for i, d in enumerate(durations)]
    spans += [dd(top=False, metrics={"_dd.measured": 1}, duration=5, span_id=500)]
    c.add_chunks([chunk(*spans)])
    (g,) = groups(c)
    assert (g.hits, g.errors, g.top_level_hits) == (101, 10, 100)
    assert g.duration == sum(durations) + 5
    assert sketch_count(g.ok_summary) == 91 and sketch_count(g.error_summary) == 10


# --------------------------------------------------------------------------- aggregation key


def test_aggregation_key_fields() -> None:
    c = conc()
    c.add_chunks([chunk(
        dd(meta={"span.kind": "server", "http.method": "GET", "http.route": "/u/{id}",
                 "_dd.svc_src": "m"}, metrics={"http.status_code": 404}, type="web"),
        dd(parent_id=7, meta={"http.status_code": "503", "http.endpoint": "/e",
                              "http.route": "/r", "_dd.origin": "synthetics-browser"}),
        dd(parent_id=7, meta={"http.status_code": "x"}, resource="other"),
    )])
    a, b, d = groups(c)
    assert (a.http_status_code, a.span_kind, a.http_method, a.http_endpoint, a.is_trace_root,
            a.type, a.service_source, a.synthetics) == (404, "server", "GET", "/u/{id}", 1, "web",
                                                        "m", False)
    assert (b.http_status_code, b.http_endpoint, b.is_trace_root, b.synthetics) == (503, "/e", 2, True)
    assert d.http_status_code == 0


def test_chunk_origin_counts_as_synthetics_when_spans_lack_it() -> None:
    c = conc()
    c.add_chunks([chunk(dd(), origin="synthetics")])
    assert groups(c)[0].synthetics is True


@pytest.mark.parametrize("meta,metrics,code", [
    ({"rpc.grpc.status_code": "0"}, {}, "0"),
    ({"rpc.grpc.status_code": "14"}, {}, "14"),
    ({"grpc.code": "StatusCode.UNAVAILABLE"}, {}, "14"),
    ({"rpc.grpc.status.code": "permission_denied"}, {}, "7"),
    ({"grpc.status.code": "NOT_A_CODE"}, {}, ""),
    ({}, {"grpc.code": 3}, "3"),
    ({}, {"grpc.code": 3.5}, ""),
    ({"rpc.grpc.status_code": "bogus"}, {"rpc.grpc.status_code": 2}, "2"),
    ({}, {}, ""),
])
def test_grpc_status_code(meta: dict[str, str], metrics: dict[str, float], code: str) -> None:
    c = conc()
    c.add_chunks([chunk(dd(meta=meta, metrics=metrics))])
    assert groups(c)[0].grpc_status_code == code


def test_peer_tags_for_client_producer_consumer_only() -> None:
    c = conc()
    peer_meta = {"db.system": "postgresql", "out.host": "db1", "db.name": "app",
                 "peer.service": "pg", "unrelated": "x"}
    c.add_chunks([chunk(
        dd(top=False, meta={"span.kind": "client", **peer_meta}, resource="q1"),
        dd(top=False, meta={"span.kind": "server", **peer_meta}, resource="q2"),
        dd(meta={"span.kind": "internal", "_dd.base_service": "orig", **peer_meta},
           resource="q3"),
        dd(top=False, meta={"span.kind": "producer", "messaging.system": "kafka",
                            "messaging.destination.name": "orders", "_dd.base_service": "b"},
           resource="q4"),
    )])
    by_res = {g.resource: g.peer_tags for g in groups(c)}
    # in the order of the (sorted) peer-tag key list
    assert by_res["q1"] == ("db.name:app", "db.system:postgresql", "out.host:db1",
                            "peer.service:pg")
    assert by_res["q2"] == ()
    assert by_res["q3"] == ("_dd.base_service:orig",)
    assert by_res["q4"] == ("_dd.base_service:b", "messaging.destination.name:orders",
                            "messaging.system:kafka")


def test_peer_tag_keys_from_agent_info() -> None:
    c = conc()
    c.set_peer_tag_keys(["db.name", "mongodb.db", "messaging.system"])
    c.add_chunks([chunk(dd(top=False, meta={"span.kind": "client", "db.name": "a",
                                            "db.system": "x", "messaging.system": "m"}))])
    assert groups(c)[0].peer_tags == ("db.name:a", "messaging.system:m")


def test_default_peer_tag_keys_are_the_agents() -> None:
    assert list(DEFAULT_PEER_TAG_KEYS) == sorted(DEFAULT_PEER_TAG_KEYS)
    assert len(DEFAULT_PEER_TAG_KEYS) == 43
    for k in ("_dd.base_service", "peer.service", "out.host", "db.system", "net.peer.name",
              "server.address", "messaging.destination.name", "rpc.service", "aws.s3.bucket"):
        assert k in DEFAULT_PEER_TAG_KEYS


@pytest.mark.parametrize("value,expected", [
    ("127.0.0.1", "127.0.0.1"),
    ("::1", "::1"),
    ("169.254.169.254", "169.254.169.254"),
    ("db.example.com", "db.example.com"),
    ("", ""),
    ("10.1.2.3", "blocked-ip-address"),
    ("10.1.2.3:5432", "blocked-ip-address:5432"),
    ("10-1-2-3.pod.cluster.local", "blocked-ip-address.pod.cluster.local"),
    ("ip-10-1-2-3.ec2.internal", "ip-blocked-ip-address.ec2.internal"),
    ("https://10.1.2.3:8443", "https://blocked-ip-address:8443"),
    ("2001:db8::42", "blocked-ip-address"),
    ("[2001:db8::42]:9042", "blocked-ip-address:9042"),
    ("10.0.0.1:9092,10.0.0.2:9092,kafka-3:9092", "blocked-ip-address:9092,kafka-3:9092"),
    ("1-2-3-foo", "1-2-3-foo"),
    ("01.2.3.4", "01.2.3.4"),
    ("256.1.1.1", "256.1.1.1"),
    ("face", "face"),
])
def test_peer_ip_quantization(value: str, expected: str) -> None:
    assert quantize_peer_ip_addresses(value) == expected


def test_agent_mode_obfuscates_stats_resources_like_the_agent() -> None:
    c = conc(resource_obfuscator=stats_resource_obfuscator())
    c.add_chunks([chunk(
        dd(type="sql", resource="SELECT * FROM t WHERE id = 42"),
        dd(type="sql", resource="SELECT * FROM t WHERE id = 43"),
        dd(type="redis", resource="SET k v\nGET k"),
        dd(type="sql", resource="SELECT 'unterminated"),
        dd(type="web", resource="GET /a/42"),
    )])
    got = {g.resource: g.hits for g in groups(c)}
    assert got == {"SELECT * FROM t WHERE id = ?": 2, "SET GET": 1,
                   "Non-parsable SQL query": 1, "GET /a/42": 1}


def test_payload_dimensions_split_payloads() -> None:
    c = conc()
    c.add_chunks([chunk(dd(), env="prod"), chunk(dd(), env="staging"), chunk(dd(), env="prod")])
    payloads = c.flush(force=True)
    assert sorted((p.env, p.version, sum(g.hits for b in p.stats for g in b.stats))
                  for p in payloads) == [("prod", "1.0", 2), ("staging", "1.0", 1)]


# --------------------------------------------------------------------------- buckets


def test_bucket_by_end_time_and_boundaries() -> None:
    clock = Clock(T0 + 5 * B)
    c = conc(clock)
    c._oldest = T0  # as if created at T0
    c.add_chunks([chunk(
        dd(start=T0 + B - 10, duration=9, span_id=1),  # ends at T0 + B - 1 -> bucket T0
        dd(start=T0 + B - 10, duration=10, span_id=2),  # ends exactly at T0 + B -> next
        dd(start=T0 - 5 * B, duration=5 * B + 2 * B, span_id=3),  # started long ago, ends T0+2B
    )])
    assert c.open_buckets() == {T0: 1, T0 + B: 1, T0 + 2 * B: 1}


def test_late_spans_go_to_the_oldest_bucket_future_ones_to_the_current() -> None:
    clock = Clock(T0 + 3 * B + 1)
    c = conc(clock)  # oldest = T0 + 3B
    c.add_chunks([chunk(dd(start=T0 - 100 * B, span_id=1), dd(start=T0 + 50 * B, span_id=2))])
    assert c.open_buckets() == {T0 + 3 * B: 1}
    (g,) = groups(c)
    assert g.hits == 2


def test_flush_keeps_the_current_and_previous_bucket_open() -> None:
    clock = Clock(T0)
    c = conc(clock)
    c.add_chunks([chunk(dd(start=T0 + 1))])
    clock.now = T0 + 2 * B - 1
    assert c.flush() == []  # still open (a late span may come)
    clock.now = T0 + 2 * B
    (p,) = c.flush()
    assert [b.start for b in p.stats] == [T0] and p.stats[0].duration == B
    assert c.open_buckets() == {}
    # after a flush, spans older than the previous bucket are re-timed into it
    c.add_chunks([chunk(dd(start=T0 - 3 * B))])
    assert c.open_buckets() == {T0 + B: 1}


def test_force_flush_takes_the_open_bucket() -> None:
    c = conc()
    c.add_chunks([chunk(dd(start=T0 + 3))])
    payloads = c.flush(force=True)
    assert [b.start for p in payloads for b in p.stats] == [T0]
    assert c.flush(force=True) == []


# --------------------------------------------------------------------------- bounds


def test_resource_cardinality_bound_and_memory() -> None:
    """20 000 distinct resources in one bucket: at most max_resources groups + 1 blocked group,
    every span still counted, and the memory held stays bounded (measured, not guessed)."""
    c = conc()
    n = 20_000
    spans = [dd(resource=f"GET /item/{i}", span_id=i + 1, duration=1000 + i) for i in range(n)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(0, n, 500):
        c.add_chunks([chunk(*spans[i:i + 500])])
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert c.open_buckets() == {T0: 1025}
    assert c.counters()["collapsed_fields"] == n - 1024
    gs = groups(c)
    blocked = [g for g in gs if g.resource == TRACER_BLOCKED_VALUE]
    assert len(blocked) == 1 and blocked[0].hits == n - 1024
    assert sum(g.hits for g in gs) == n
    assert held < 3_000_000, held  # ~1 025 groups with one-bin sketches: well under 3 MB


def test_whole_key_bound_collapses_into_the_overflow_group() -> None:
    c = conc(limits=StatsLimits(max_groups=3))
    c.add_chunks([chunk(*[dd(name=f"op{i}", span_id=i + 1) for i in range(10)])])
    gs = groups(c)
    assert len(gs) == 4
    (over,) = [g for g in gs if g.name == TRACER_BLOCKED_VALUE]
    assert over.hits == 7 and over.peer_tags == (TRACER_BLOCKED_VALUE,)
    assert (over.service, over.resource, over.is_trace_root) == (TRACER_BLOCKED_VALUE,) * 2 + (0,)
    assert c.counters()["collapsed_groups"] == 7


def test_endpoint_and_peer_tag_bounds() -> None:
    c = conc(limits=StatsLimits(max_http_endpoints=2, max_peer_tags=2))
    c.add_chunks([chunk(*[
        dd(top=False, resource="r", span_id=i + 1,
           meta={"span.kind": "client", "http.route": f"/e{i}", "peer.service": f"p{i}"})
        for i in range(5)
    ])])
    gs = groups(c)
    assert sorted({g.http_endpoint for g in gs}) == ["/e0", "/e1", TRACER_BLOCKED_VALUE]
    assert {g.peer_tags for g in gs} == {("peer.service:p0",), ("peer.service:p1",),
                                         (TRACER_BLOCKED_VALUE,)}
    assert sum(g.hits for g in gs) == 5


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_groups"):
        StatsLimits(max_groups=0)


def test_thread_safe_aggregation() -> None:
    c = conc()

    def work(k: int) -> None:
        for i in range(200):
            c.add_chunks([chunk(dd(resource=f"r{i % 7}", span_id=k * 1000 + i))])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gs = groups(c)
    assert len(gs) == 7 and sum(g.hits for g in gs) == 1600


def test_forked_child_starts_empty() -> None:
    c = conc()
    c.add_chunks([chunk(dd())])
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            c.add_chunks([chunk(dd(resource="c"))])
            hits = sum(g.hits for g in groups(c))
            os.write(w, str(hits).encode())
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 100).decode()
    os.waitpid(pid, 0)
    assert got == "1"  # only the child's own span
    assert sum(g.hits for g in groups(c)) == 1  # the parent keeps its own


# --------------------------------------------------------------------------- through translation


def test_translated_otel_spans() -> None:
    spans = [
        make_span("GET /users/{id}", kind=SpanKind.SERVER, span_id=1,
                  attributes={"http.request.method": "GET", "http.route": "/users/{id}",
                              "http.response.status_code": 200},
                  resource={"service.name": "web", "deployment.environment.name": "prod"}),
        make_span("SELECT", kind=SpanKind.CLIENT, span_id=2, parent_id=1,
                  attributes={"db.system": "postgresql", "db.statement": "SELECT 1",
                              "server.address": "10.0.0.5"},
                  resource={"service.name": "web", "deployment.environment.name": "prod"}),
        make_span("work", kind=SpanKind.INTERNAL, span_id=3, parent_id=1,
                  resource={"service.name": "web", "deployment.environment.name": "prod"}),
        make_span("GET /users/{id}", kind=SpanKind.SERVER, span_id=4, trace_id=99,
                  status=Status(StatusCode.ERROR),
                  attributes={"http.request.method": "GET", "http.route": "/users/{id}",
                              "http.response.status_code": 500},
                  resource={"service.name": "web", "deployment.environment.name": "prod"}),
    ]
    c = conc()
    c.add_chunks(translate_spans(spans, TranslateOptions()))
    (payload,) = c.flush(force=True)
    assert payload.env == "prod"
    gs = {(g.span_kind, g.http_status_code): g for b in payload.stats for g in b.stats}
    assert set(gs) == {("server", 200), ("server", 500), ("client", 0)}  # internal: not counted
    server = gs[("server", 200)]
    assert (server.hits, server.top_level_hits, server.is_trace_root, server.http_method,
            server.http_endpoint) == (1, 1, 1, "GET", "/users/{id}")
    assert gs[("server", 500)].errors == 1
    client = gs[("client", 0)]
    assert client.top_level_hits == 0 and client.is_trace_root == 2
    assert "db.system:postgresql" in client.peer_tags
    assert any(t.endswith(":blocked-ip-address") for t in client.peer_tags)  # 10.0.0.5


# --------------------------------------------------------------------------- encoding

GROUP_KEYS = ["Service", "Name", "Resource", "HTTPStatusCode", "Type", "DBType", "Hits", "Errors",
              "Duration", "OkSummary", "ErrorSummary", "Synthetics", "TopLevelHits", "SpanKind",
              "PeerTags", "IsTraceRoot", "GRPCStatusCode", "HTTPMethod", "HTTPEndpoint",
              "srv_src"]
PAYLOAD_KEYS = ["Hostname", "Env", "Version", "Stats", "Lang", "TracerVersion", "RuntimeID",
                "Sequence", "AgentAggregation", "Service", "ContainerID", "Tags", "GitCommitSha",
                "ImageTag", "ProcessTagsHash", "ProcessTags"]


def sample_payload() -> ClientStatsPayload:
    c = conc()
    c.add_chunks([chunk(
        dd(meta={"span.kind": "server", "http.method": "GET"}, metrics={"http.status_code": 200},
           duration=2_000_000),
        dd(top=False, parent_id=1, meta={"span.kind": "client", "peer.service": "db",
                                          "rpc.grpc.status_code": "5"}, error=1, duration=7),
    )])
    (p,) = c.flush(force=True)
    p.sequence, p.runtime_id, p.tracer_version = 3, "rid", "9.9"
    return p


def test_client_stats_msgpack_keys_and_types() -> None:
    raw = encode_client_stats(sample_payload())
    doc = msgpack.unpackb(raw, raw=True)  # raw=True: str and bin stay distinguishable
    assert [k.decode() for k in doc] == PAYLOAD_KEYS
    assert all(isinstance(k, bytes) for k in doc)
    (bucket,) = doc[b"Stats"]
    assert [k.decode() for k in bucket] == ["Start", "Duration", "Stats", "AgentTimeShift"]
    assert bucket[b"Start"] == T0 and bucket[b"Duration"] == B
    server, client = bucket[b"Stats"]
    assert [k.decode() for k in server] == GROUP_KEYS
    # str vs bin on the wire: decode again with raw=False; bin comes back as bytes, str as str
    typed = msgpack.unpackb(raw, raw=False)
    g = typed["Stats"][0]["Stats"][1]
    assert isinstance(g["OkSummary"], bytes) and isinstance(g["ErrorSummary"], bytes)
    assert isinstance(g["Service"], str) and isinstance(g["GRPCStatusCode"], str)
    assert g["GRPCStatusCode"] == "5" and g["PeerTags"] == ["peer.service:db"]
    assert g["Synthetics"] is False and g["IsTraceRoot"] == 2
    assert (g["Hits"], g["Errors"], g["TopLevelHits"], g["Duration"]) == (1, 1, 0, 7)
    assert sketch_count(g["ErrorSummary"]) == 1 and sketch_count(g["OkSummary"]) == 0
    s = typed["Stats"][0]["Stats"][0]
    assert (s["HTTPStatusCode"], s["HTTPMethod"], s["IsTraceRoot"]) == (200, "GET", 1)
    assert typed["Sequence"] == 3 and typed["RuntimeID"] == "rid" and typed["Lang"] == "python"


def test_counters_are_unsigned_on_the_wire() -> None:
    p = sample_payload()
    p.stats[0].stats[0].duration = -5  # never happens, but must not produce a negative int
    raw = encode_client_stats(p)
    assert msgpack.unpackb(raw)["Stats"][0]["Stats"][0]["Duration"] == 0


def _payload_with_groups(n_buckets: int, per_bucket: int) -> ClientStatsPayload:
    g = sample_payload().stats[0].stats[0]
    return ClientStatsPayload(hostname="", env="e", version="v", stats=[
        StatsBucket(start=T0 + i * B, duration=B, stats=[g] * per_bucket)
        for i in range(n_buckets)
    ])


def test_split_at_4000_groups() -> None:
    p = _payload_with_groups(3, 3000)  # 9 000 groups
    pieces = split_client_payload(p)
    assert [x.group_count() for x in pieces] == [4000, 4000, 1000]
    starts = [[b.start for b in x.stats] for x in pieces]
    assert starts == [[T0, T0 + B], [T0 + B, T0 + 2 * B], [T0 + 2 * B]]
    assert sum(x.group_count() for x in pieces) == 9000
    bodies = plan_intake_payloads([p, _payload_with_groups(1, 10)])
    assert [(sum(x.group_count() for x in ps), split) for ps, split in bodies] == [
        (4000, True), (4000, True), (1010, True)]
    assert plan_intake_payloads([_payload_with_groups(1, 10)] * 2) == [
        ([_payload_with_groups(1, 10)] * 2, False)]


def test_intake_stats_payload_shape() -> None:
    raw = encode_stats_payload([sample_payload()], split=False)
    doc = msgpack.unpackb(raw)
    assert list(doc) == ["AgentHostname", "AgentEnv", "Stats", "AgentVersion", "ClientComputed",
                         "SplitPayload"]
    assert doc["ClientComputed"] is True and doc["SplitPayload"] is False
    assert doc["Stats"][0]["Stats"][0]["Stats"][0]["Hits"] == 1


# --------------------------------------------------------------------------- writer and sinks


class Recorder:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.endpoints = ["/v0.4/traces", "/v0.6/stats"]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/info":
            return httpx.Response(200, json={"endpoints": self.endpoints})
        return httpx.Response(self.status)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    yield Recorder()


def _transport(rec: Recorder, url: str = "http://127.0.0.1:8126") -> HttpTransport:
    return HttpTransport(parse_agent_url(url), timeout=1.0, _transport=httpx.MockTransport(rec))


class ListSink:
    def __init__(self) -> None:
        self.payloads: list[ClientStatsPayload] = []

    def start(self, concentrator: SpanConcentrator) -> None:
        pass

    def send(self, payloads: Any) -> None:
        self.payloads.extend(payloads)


def test_writer_shutdown_flushes_every_bucket_including_the_open_one() -> None:
    clock = Clock()
    sink = ListSink()
    w = StatsWriter(conc(clock), sink, interval=3600, service="svc", env="e", version="v")
    w.add_chunks([chunk(dd(start=T0 + 1), env="", version="")])
    w.shutdown(timeout=1)
    (p,) = sink.payloads
    assert (p.service, p.env, p.version, p.sequence, p.lang) == ("svc", "e", "v", 1, "python")
    assert p.runtime_id and sum(g.hits for b in p.stats for g in b.stats) == 1
    w.shutdown()  # idempotent
    assert len(sink.payloads) == 1


def test_writer_thread_flushes_closed_buckets() -> None:
    clock = Clock()
    sink = ListSink()
    w = StatsWriter(conc(clock), sink, interval=0.02)
    w.add_chunks([chunk(dd(start=T0 + 1))])
    clock.now = T0 + 2 * B
    deadline = threading.Event()
    for _ in range(200):
        if sink.payloads:
            break
        deadline.wait(0.01)
    w.shutdown(timeout=1)
    assert sum(g.hits for p in sink.payloads for b in p.stats for g in b.stats) == 1
    assert [p.sequence for p in sink.payloads] == list(range(1, len(sink.payloads) + 1))


def test_agent_sink_posts_v06_stats(recorder: Recorder) -> None:
    counters = ExportCounters()
    sink = AgentStatsSink(_transport(recorder), headers={"Datadog-Meta-Lang": "python"},
                          counters=counters, stop=threading.Event())
    sink.send([sample_payload()])
    (req,) = recorder.requests
    assert req.method == "POST" and req.url.path == "/v0.6/stats"
    assert req.headers["content-type"] == "application/msgpack"
    assert req.headers["datadog-meta-lang"] == "python"
    assert msgpack.unpackb(req.content)["Stats"][0]["Stats"][0]["Hits"] == 1
    snap = counters.snapshot()
    assert snap["stats.payloads_sent"] == 1 and snap["stats.groups_sent"] == 2


def test_agent_sink_404_switches_stats_off(recorder: Recorder) -> None:
    recorder.status = 404
    headers = {"Datadog-Client-Computed-Stats": "true"}
    counters = ExportCounters()
    sink = AgentStatsSink(_transport(recorder), headers={}, counters=counters,
                          stop=threading.Event(),
                          on_unsupported=lambda: headers.pop("Datadog-Client-Computed-Stats"))
    sink.send([sample_payload(), sample_payload()])
    assert sink.disabled and headers == {}
    assert len(recorder.requests) == 1  # the second payload is not even tried
    assert counters.snapshot()["stats.payloads_dropped"] == 2


def test_agent_sink_info_without_stats_endpoint_disables(recorder: Recorder) -> None:
    recorder.endpoints = ["/v0.4/traces"]
    called: list[bool] = []
    sink = AgentStatsSink(_transport(recorder), headers={}, counters=ExportCounters(),
                          stop=threading.Event(), on_unsupported=lambda: called.append(True))
    sink.start(conc())
    assert sink.disabled and called == [True]


def test_intake_sink_gzip_and_202(recorder: Recorder) -> None:
    recorder.status = 202
    counters = ExportCounters()
    sink = IntakeStatsSink(_transport(recorder, "https://trace.agent.example"), counters=counters,
                           stop=threading.Event())
    p = sample_payload()
    p.env = ""
    sink.send([p])
    (req,) = recorder.requests
    assert req.url.path == "/api/v0.2/stats" and req.headers["content-encoding"] == "gzip"
    doc = msgpack.unpackb(gzip.decompress(req.content))
    assert doc["ClientComputed"] is True and doc["Stats"][0]["Env"] == "none"
    assert counters.snapshot()["stats.payloads_sent"] == 1


def test_intake_sink_rejected_key_is_counted(recorder: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    recorder.status = 403
    counters = ExportCounters()
    sink = IntakeStatsSink(_transport(recorder), counters=counters, stop=threading.Event())
    sink.send([sample_payload()])
    assert counters.snapshot()["stats.payloads_dropped"] == 1
    assert "rejected the API key" in caplog.text


# --------------------------------------------------------------------------- exporter wiring


def test_exporter_agent_mode_with_stats(recorder: Recorder) -> None:
    from otel_dd_bridge import DatadogSpanExporter

    exp = DatadogSpanExporter(agent_url="http://127.0.0.1:8126", compute_stats=True,
                              _transport=httpx.MockTransport(recorder))
    assert exp.stats_concentrator is not None
    exp.export([make_span("GET /", kind=SpanKind.SERVER, attributes={"http.route": "/"})])
    exp.shutdown()
    traces = [r for r in recorder.requests if r.url.path.endswith("/traces")]
    assert traces and traces[0].headers["datadog-client-computed-stats"] == "true"
    (stats,) = [r for r in recorder.requests if r.url.path == "/v0.6/stats"]
    doc = msgpack.unpackb(stats.content)
    assert sum(g["Hits"] for b in doc["Stats"] for g in b["Stats"]) == 1


def test_exporter_stats_off_by_default_in_agent_mode(recorder: Recorder) -> None:
    from otel_dd_bridge import DatadogSpanExporter

    exp = DatadogSpanExporter(agent_url="http://127.0.0.1:8126",
                              _transport=httpx.MockTransport(recorder))
    assert exp.stats_concentrator is None
    exp.export([make_span("x", kind=SpanKind.SERVER)])
    exp.shutdown()
    assert all("datadog-client-computed-stats" not in r.headers for r in recorder.requests)
    assert not [r for r in recorder.requests if "stats" in r.url.path]


def test_env_var_turns_stats_on() -> None:
    from otel_dd_bridge.config import resolve_config
    from otel_dd_bridge.stats_writer import stats_enabled

    assert stats_enabled(resolve_config({"DD_TRACE_STATS_COMPUTATION_ENABLED": "true"}))
    assert not stats_enabled(resolve_config({"OTEL_DD_BRIDGE_COMPUTE_STATS": "false",
                                             "DD_TRACE_STATS_COMPUTATION_ENABLED": "true"}))
    assert not stats_enabled(resolve_config({}))
    cfg = resolve_config({"OTEL_DD_BRIDGE_STATS_MAX_GROUPS": "10"})
    assert cfg.stats_max_groups == 10


def test_quantile_accuracy_through_the_concentrator() -> None:
    import random

    rng = random.Random(11)
    durations = [int(rng.lognormvariate(16, 1.2)) for _ in range(3000)]
    c = conc()
    c.add_chunks([chunk(*[dd(duration=d, span_id=i + 1) for i, d in enumerate(durations)])])
    (g,) = groups(c)
    msg = sketch(g.ok_summary)
    counts = list(msg.positiveValues.contiguousBinCounts)
    first = msg.positiveValues.contiguousBinIndexOffset
    gamma, off = msg.mapping.gamma, msg.mapping.indexOffset
    srt = sorted(durations)
    for q in (0.5, 0.75, 0.9, 0.95, 0.99, 1.0):
        rank = q * (len(srt) - 1)
        cum = 0.0
        for i, cnt in enumerate(counts):
            cum += cnt
            if cum > rank:
                got = gamma ** (first + i - off) * (1 + (gamma - 1) / (gamma + 1))
                break
        want = srt[math.floor(rank)]
        assert abs(got / want - 1) <= RELATIVE_ACCURACY
