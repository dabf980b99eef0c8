"""A deterministic translation corpus, written out exactly: ``python -m tests.harness.translate_corpus OUT``.

tests/test_compiled.py runs this twice, once with the compiled modules and once with
``OTEL_DD_BRIDGE_NO_EXTENSIONS=1`` (pure Python), and compares the two files byte for byte. The
spans come from a seeded generator that aims at every branch of the translation: each rule key
(HTTP, DB, RPC, messaging, gen_ai, the span-field keys, analytics/sampling specials), odd value
types (bool, big and negative ints, NaN, lists, bytes, empty and long strings, non-ASCII),
exception events, links, statuses with descriptions, remote parents, ``dd=`` tracestate,
several resources and scopes, SDK-exact spans and a public-API subclass; plus the benchmark's
realistic span set. Each is translated under several option sets, hooks included, and every
field of the result is written in order (meta and metrics in insertion order), with the
SHA-256 of its v0.4 and v0.5 bodies.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from typing import Any

import msgpack
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceState

from benchmarks.spanset import SeededIds, build_spans
from otel_dd_bridge.encoding import get_encoder
from otel_dd_bridge.translate import TranslateOptions, _Cache, translate_spans_with_stats

_KEYS: dict[str, list[Any]] = {
    "http.request.method": ["GET", "POST", "_OTHER", ""],
    "http.method": ["PUT", "get"],
    "http.route": ["/users/{id}", "", 5],
    "url.template": ["/api/{v}"],
    "url.full": ["https://example.test/a?b=1"],
    "http.response.status_code": [200, 404, 500, "503", 99, True],
    "http.status_code": [201, "abc", 700],
    "db.system": ["postgresql", "redis", "mysql", "mongodb", "cassandra", "weird db"],
    "db.system.name": ["sqlite", ""],
    "db.statement": ["SELECT * FROM t WHERE id = 1", ""],
    "db.query.text": ["UPDATE t SET a = 2"],
    "db.namespace": ["appdb"],
    "db.operation.name": ["SELECT"],
    "rpc.system": ["grpc"],
    "rpc.service": ["pkg.Svc"],
    "rpc.method": ["Do"],
    "rpc.grpc.status_code": [0, 2, 14, "5"],
    "rpc.response.status_code": ["OK", "UNAVAILABLE"],
    "messaging.system": ["kafka", "rabbitmq"],
    "messaging.operation.type": ["publish", "receive"],
    "messaging.destination.name": ["orders"],
    "gen_ai.system": ["openai"],
    "gen_ai.request.model": ["gpt-x"],
    "graphql.operation.type": ["query"],
    "graphql.operation.name": ["Q"],
    "faas.trigger": ["http"],
    "aws.operation": ["GetItem"],
    "service.name": ["span-svc", "", "Bad Service!"],
    "operation.name": ["custom.op", "Weird Op!"],
    "resource.name": ["custom resource"],
    "span.type": ["web", "custom-type"],
    "analytics.event": [True, "false", 1],
    "sampling.priority": [2, -1, 0],
    "_sampling_priority_v1": [1],
    "_dd.measured": [1, 0],
    "_sample_rate": [0.5],
    "service.version": ["9.9"],
    "deployment.environment.name": ["staging", "Prod Env"],
    "env": ["qa"],
    "version": ["2.0"],
    "peer.service": ["billing"],
    "server.address": ["api.internal"],
    "net.peer.name": ["old.internal"],
    "error.type": ["ValueError"],
    "exception.message": ["boom"],
    "container.id": ["c0ffee"],
    "k8s.pod.name": ["pod-1"],
    "custom.int": [0, -1, 127, 128, -33, 2**32, 2**62, 2**63 - 1, -(2**63)],
    "custom.float": [1.5, float("nan"), float("inf"), -0.0, 1e300],
    "custom.bool": [False, True],
    "custom.list": [["a", "b"], [1, 2], [True], [1.5, 2.5], []],
    "custom.bytes": [b"\x00\xff"],
    "custom.long": ["x" * 7000, "é" * 4000],
    "custom.unicode": ["héllo ✓ 日本", "\u00e9\u0301"],
    "otel.status_code": ["OVERRIDE"],
    "otel.library.name": ["attr-lib"],
}
_KEY_NAMES = sorted(_KEYS)

_RESOURCES = [
    # Resource(...), not Resource.create: that adds a random service.instance.id
    Resource({"service.name": "svc-a", "deployment.environment.name": "prod",
              "service.version": "1.0", "telemetry.sdk.language": "python"}),
    Resource({"service.name": "svc-b", "host.name": "host-b", "container.id": "abc123",
              "k8s.pod.name": "pod-b", "rpc.grpc.status_code": 3}),
    Resource({"service.name": "svc-c", "http.status_code": 500, "deployment.environment": "dev",
              "cloud.provider": "aws", "custom.res": "r"}),
    Resource({}),
]
_SCOPES = [
    InstrumentationScope("opentelemetry.instrumentation.flask", "0.1"),
    InstrumentationScope("my.lib", None, None, {"scope.attr": "s"}),
    None,
]
_KINDS = [SpanKind.SERVER, SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER,
          SpanKind.INTERNAL]


class _PublicSpan(ReadableSpan):
    """Not an exact SDK type: the translation reads it through the public API."""


def _attrs(rng: random.Random) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in rng.sample(_KEY_NAMES, rng.randint(0, 9)):
        out[k] = rng.choice(_KEYS[k])
    if rng.random() < 0.002:  # beyond int64: that batch's bodies fail to encode (both paths)
        out["custom.bigint"] = rng.choice([2**63, 2**64, -(2**63) - 1])
    return out


def _spans(seed: int, n: int) -> list[ReadableSpan]:
    rng = random.Random(seed)
    spans: list[ReadableSpan] = []
    trace_id = 0
    parent: SpanContext | None = None
    for i in range(n):
        if i % 4 == 0:  # a new trace: 64- or 128-bit, maybe a remote parent, maybe dd= state
            trace_id = rng.getrandbits(128) if rng.random() < 0.7 else rng.getrandbits(64)
            trace_id = trace_id or 1
            state = TraceState()
            if rng.random() < 0.3:
                state = TraceState([("dd", rng.choice(["s:2;o:rum;t.dm:-4", "s:-1;p:00f067aa0ba902b7",
                                                       "s:1;t.usr.id:abc"]))])
            if rng.random() < 0.2:
                state = state.add("other", "v1")
            parent = (SpanContext(trace_id, rng.getrandbits(64) or 1, is_remote=True,
                                  trace_state=state)
                      if rng.random() < 0.3 else None)
        span_id = rng.getrandbits(64) or 1
        if rng.random() < 0.01:
            span_id = 0  # invalid: dropped and counted
        ctx = SpanContext(trace_id, span_id, is_remote=False,
                          trace_state=parent.trace_state if parent else TraceState())
        events = []
        if rng.random() < 0.15:
            events.append(Event("exception", {"exception.type": "KeyError",
                                              "exception.message": "missing 'k'",
                                              "exception.stacktrace": "Traceback...\n  x"},
                                timestamp=1_700_000_000_000_000_123 + i))
        if rng.random() < 0.1:
            events.append(Event("note", {"n": 1, "f": 0.5, "l": ["a"]}, timestamp=1_700_000_001 + i))
        links = []
        if rng.random() < 0.1:
            links.append(Link(SpanContext(rng.getrandbits(128), rng.getrandbits(64) or 1, False,
                                          trace_state=TraceState([("k", "v")])),
                              {"link.attr": "x"}))
        code = rng.choice([StatusCode.UNSET, StatusCode.UNSET, StatusCode.OK, StatusCode.ERROR])
        status = Status(code, rng.choice([None, "went wrong"]) if code is StatusCode.ERROR else None)
        attrs = _attrs(rng)
        start = 1_700_000_000_000_000_000 + i * 1_000_000
        end = start + rng.choice([0, 1, 12_345, 10**12]) if rng.random() > 0.02 else start - 5
        cls = _PublicSpan if rng.random() < 0.1 else ReadableSpan
        spans.append(cls(
            name=rng.choice(["GET /x", "query", "", "Weird Name!", "a" * 200]),
            context=ctx, parent=parent, resource=rng.choice(_RESOURCES),
            attributes=BoundedAttributes(attributes=attrs) if rng.random() < 0.8 else attrs,
            events=events, links=links, kind=rng.choice(_KINDS), status=status,
            start_time=start, end_time=end, instrumentation_scope=rng.choice(_SCOPES),
        ))
        if rng.random() < 0.6:
            parent = ctx
    return spans


def _hook_name(span: Any, dd: Any) -> str | None:
    return "hooked.op" if dd.type == "web" else None


def _hook_raise(span: Any, dd: Any) -> str | None:
    raise RuntimeError("hook failure")


_OPTIONS = [
    TranslateOptions(),
    TranslateOptions(top_level="classic", emit_p_tid=False, emit_root_hostname=False),
    TranslateOptions(span_name_as_resource_name=True,
                     span_name_remappings={"http.server.request": "web.request"}),
    TranslateOptions(service="opt-svc", env="opt-env", version="opt-ver",
                     tags={"team": "core", "env": "ignored"}, sampling_percentage=50.0),
    TranslateOptions(error_tags_from_events=False, name_hook=_hook_name,
                     resource_hook=_hook_raise, service_hook=lambda s, d: "hooked-svc"),
]


def _dump(result: Any) -> list[Any]:
    out: list[Any] = [result.dropped, result.hook_errors]
    for c in result.chunks:
        p = c.payload
        out.append([c.priority, c.origin, list(c.tags.items()), c.dropped_trace,
                    None if p is None else [p.hostname, p.env, p.app_version, p.container_id,
                                            p.language_name, p.tracer_version,
                                            list(p.tags.items())]])
        for s in c.spans:
            out.append([s.trace_id, s.span_id, s.parent_id, s.service, s.name, s.resource,
                        s.type, s.start, s.duration, s.error, list(s.meta.items()),
                        [[k, repr(v), type(v).__name__] for k, v in s.metrics.items()]])
    return out


def _body_digest(encoder: Any, chunks: Any) -> str:
    try:
        return hashlib.sha256(encoder.encode(chunks)).hexdigest()
    except Exception as exc:  # noqa: BLE001 - e.g. an int beyond 64 bits (delivery repairs it)
        return f"{type(exc).__name__}: {exc}"


def _unique_pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise AssertionError(f"a map with a repeated key: {sorted(keys)}")
    return dict(pairs)


def _check_unique_keys(encoder: Any, chunks: Any) -> None:
    """A span's own meta and its shared tail never repeat a key on the wire."""
    try:
        body = encoder.encode(chunks)
    except Exception:  # noqa: BLE001 - recorded by _body_digest
        return
    msgpack.unpackb(body, object_pairs_hook=_unique_pairs, strict_map_key=False)


def corpus_bytes() -> bytes:
    sets = [_spans(seed, 400) for seed in range(6)]
    sets.append(build_spans(400, id_generator=SeededIds(99), fixed_time=True))
    doc: list[Any] = []
    encoders = [get_encoder("v0.4"), get_encoder("v0.5")]
    for opts in _OPTIONS:
        cache = _Cache(opts.max_cached_resources)
        for spans in sets:
            for i in range(0, len(spans), 128):  # batches share the cache, as in the exporter
                result = translate_spans_with_stats(spans[i:i + 128], opts, _cache=cache)
                # the wire bodies first (the compiled encoders in a compiled run), while the
                # spans still share their meta tails (reading `.meta` merges them)
                doc.append(sum(s._tail is not None for c in result.chunks for s in c.spans))
                doc.append([_body_digest(enc, result.chunks) for enc in encoders])
                _check_unique_keys(encoders[0], result.chunks)
                doc.append(_dump(result))
    # Every id, time and value above is seeded: the document is the same in every run.
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")


if __name__ == "__main__":
    with open(sys.argv[1], "wb") as f:
        f.write(corpus_bytes())
