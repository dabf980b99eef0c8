"""The parity span set: real OTel SDK spans with the attributes instrumentations emit.

Built with a real ``TracerProvider`` per service resource and an in-memory exporter, so the spans
are what an application would hand to our exporter (ids, timestamps, events, status). Every
obfuscation and stats rule the mini-agent applies is exercised at least once:

* HTTP server (new and old semantic conventions) and client, 2xx / 4xx / 5xx, a query string;
* gRPC server with a status code; messaging producer / consumer;
* SQL for postgresql, mysql and sqlite (old ``db.statement`` and new ``db.query.text``
  conventions): numbers (ints, negatives, floats, exponents, hex), quoted strings (with escaped
  quotes, dollar quoting, ``E''``, double-quoted identifiers), ``IN (...)`` lists, ``NULL`` /
  booleans, ``--`` and ``/* */`` comments, several statements, bind placeholders, a very long
  query (past the Agent's 5 000-character resource limit);
* Redis (with arguments, ``AUTH``, multi-command pipelines) and Memcached (with a stored value);
* errors: a server span with an exception event, a 5xx client, an internal span with status
  ERROR only;
* non-ASCII and oversized names, services, tag keys and values;
* internal children (not top-level: no stats), a measured internal span, a service change;
* the tag obfuscations the Go Agent applies by default (``redis.raw_command``,
  ``memcached.command``, ``mongodb.query``, ``elasticsearch.body``, user info in ``http.url``,
  credit-card numbers in any tag) and a ``cassandra`` statement;
* traces sampled out upstream (``tracestate`` ``dd=s:0`` and ``dd=s:-1`` on a remote parent):
  they still count in stats.

:func:`build_parity_spans` returns them plus a ``case`` name per span id (also set as attribute
``parity.case`` so a diff can name each span).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

__all__ = ["CASE_ATTR", "LONG_SQL", "SQL_CASES", "build_parity_spans"]

CASE_ATTR = "parity.case"

LONG_SQL = "INSERT INTO events (id, name, payload) VALUES " + ", ".join(
    f"({i}, 'event-{i}', '{{\"n\": {i}}}')" for i in range(400)
)

#: (case, db.system, statement): every kind of literal, per dialect.
SQL_CASES: list[tuple[str, str, str]] = [
    ("pg_numbers", "postgresql",
     "SELECT * FROM orders WHERE id = 42 AND total > 10.5 AND delta = -3 AND ratio < 1.5e-3 "
     "AND flags = 0x1F LIMIT 10 OFFSET 20"),
    ("pg_strings", "postgresql",
     "SELECT id FROM users WHERE name = 'O''Brien' AND email = E'bob\\'s@example.com' "
     "AND \"Nick Name\" = 'bob' AND note = $$dollar 'quoted'$$"),
    ("pg_in_list", "postgresql",
     "SELECT * FROM items WHERE id IN (1, 2, 3, 4) AND sku IN ('a', 'b') AND deleted IS NULL "
     "AND active = TRUE"),
    ("pg_comments", "postgresql",
     "-- fetch the user\nSELECT /* hint: index */ name FROM users WHERE id = 7 /* trailing */"),
    ("pg_multi", "postgresql",
     "BEGIN; UPDATE accounts SET balance = balance - 100 WHERE id = 1; "
     "UPDATE accounts SET balance = balance + 100 WHERE id = 2; COMMIT"),
    ("pg_placeholders", "postgresql",
     "SELECT * FROM t WHERE a = $1 AND b = %s AND c = %(name)s AND d = ?"),
    ("pg_long", "postgresql", LONG_SQL),
    ("mysql_numbers", "mysql",
     "SELECT * FROM `orders` WHERE `id` = 42 AND price BETWEEN 9.99 AND 100 LIMIT 5"),
    ("mysql_strings", "mysql",
     "SELECT * FROM users WHERE name = \"alice\" AND city = 'Zürich' AND pw = 'p@ss\\'w0rd'"),
    ("mysql_in_list", "mysql",
     "DELETE FROM sessions WHERE user_id IN (10, 20, 30) AND token IN ('x', 'y', 'z')"),
    ("mysql_comments", "mysql",
     "SELECT name FROM users # trailing hash comment\nWHERE id = 3 -- and a dash comment"),
    ("mysql_multi", "mysql",
     "INSERT INTO logs (msg, level) VALUES ('started', 1); SELECT LAST_INSERT_ID()"),
    ("sqlite_numbers", "sqlite",
     "UPDATE counters SET n = n + 1, updated = 1700000000.25 WHERE name = 'hits'"),
    ("sqlite_blob_named", "sqlite",
     "INSERT INTO files (id, data, owner) VALUES (:id, x'DEADBEEF', @owner)"),
    ("sqlite_in_list", "sqlite",
     "SELECT * FROM t WHERE c IN (1.5, 2.5) AND d NOT IN ('q') ORDER BY c DESC"),
    ("sqlite_comments_multi", "sqlite",
     "/* migration 12 */ CREATE TABLE IF NOT EXISTS kv (k TEXT, v TEXT); "
     "INSERT INTO kv VALUES ('a', 'b'); -- done"),
]

#: (case, command as db.statement, span name).
REDIS_CASES: list[tuple[str, str, str]] = [
    ("redis_set", "SET user:42:name alice EX 3600", "SET"),
    ("redis_hmset", "HMSET user:42 name alice email alice@example.com", "HMSET"),
    ("redis_auth", "AUTH s3cr3t-password", "AUTH"),
    ("redis_get", "GET user:42:name", "GET"),
    ("redis_pipeline", "SET a 1\nINCRBY counter 5\nEXPIRE a 60", "PIPELINE"),
]

MEMCACHED_CASES: list[tuple[str, str, str]] = [
    ("memcached_set", "set session:abc 0 3600 11\r\nhello world", "set"),
    ("memcached_get", "get session:abc", "get"),
    ("memcached_incr", "incr visits 1", "incr"),
]

_LONG_VALUE = "v" * 30_000
_LONG_KEY = "k" * 250
_LONG_NAME = "op." + "n" * 200


class _Builder:
    def __init__(self) -> None:
        self.memory = InMemorySpanExporter()
        self.cases: dict[int, str] = {}
        self._providers: dict[str, TracerProvider] = {}

    def tracer(self, service: str, **res: Any) -> trace.Tracer:
        key = repr((service, sorted(res.items())))
        provider = self._providers.get(key)
        if provider is None:
            attrs: dict[str, Any] = {"service.name": service, "deployment.environment.name": "parity",
                                     "service.version": "1.2.3", "telemetry.sdk.language": "python"}
            attrs.update(res)
            provider = TracerProvider(resource=Resource.create(attrs))
            provider.add_span_processor(SimpleSpanProcessor(self.memory))
            self._providers[key] = provider
        return provider.get_tracer("parity.instrumentation", "0.1")

    @contextmanager
    def span(self, tracer: trace.Tracer, case: str, name: str, kind: SpanKind = SpanKind.INTERNAL,
             attributes: dict[str, Any] | None = None,
             remote_dd_state: str | None = None) -> Iterator[trace.Span]:
        """A span; ``remote_dd_state`` gives it a remote parent whose tracestate ``dd=`` member
        carries an upstream Datadog decision (e.g. ``s:0``), as a propagator would."""
        attrs = dict(attributes or {})
        attrs[CASE_ATTR] = case
        ctx = None
        if remote_dd_state is not None:
            parent = SpanContext(0x5EED_0000_0000_0000_0000_0000_0000_0000 | len(self.cases) + 1,
                                 0xFACE_0000_0000_0000 | len(self.cases) + 1, True,
                                 TraceFlags(TraceFlags.SAMPLED),
                                 TraceState([("dd", remote_dd_state)]))
            ctx = trace.set_span_in_context(NonRecordingSpan(parent))
        with tracer.start_as_current_span(name, context=ctx, kind=kind, attributes=attrs,
                                          record_exception=False, set_status_on_exception=False) as s:
            self.cases[s.get_span_context().span_id] = case
            yield s

    def finish(self) -> tuple[list[ReadableSpan], dict[int, str]]:
        for p in self._providers.values():
            p.shutdown()
        return list(self.memory.get_finished_spans()), self.cases


def build_parity_spans() -> tuple[list[ReadableSpan], dict[int, str]]:
    """Build the span set; returns (finished spans, span_id -> case name)."""
    b = _Builder()
    web = b.tracer("parity-web")
    db_client = {"net.peer.name": "db.internal", "net.peer.port": 5432}

    # A server request with DB, cache and outgoing HTTP children (one trace).
    with b.span(web, "http_server_new", "GET /users/{id}", SpanKind.SERVER, {
        "http.request.method": "GET", "url.path": "/users/42", "url.scheme": "https",
        "url.query": "verbose=1&token=abc", "http.route": "/users/{id}",
        "http.response.status_code": 200, "server.address": "shop.example.com",
        "network.protocol.version": "1.1", "user_agent.original": "curl/8.5.0",
        "client.address": "10.1.2.3",
    }):
        for case, system, stmt in SQL_CASES:
            op = stmt.split(None, 1)[0].strip("-/*").upper() or "QUERY"
            attrs = {"db.system": system, "db.name": "shop", "db.statement": stmt,
                     "db.user": "app", **db_client}
            with b.span(web, case, op, SpanKind.CLIENT, attrs):
                pass
        # New database conventions (db.system.name / db.query.text / db.namespace).
        with b.span(web, "pg_new_semconv", "SELECT shop.users", SpanKind.CLIENT, {
            "db.system.name": "postgresql", "db.namespace": "shop",
            "db.query.text": "SELECT * FROM users WHERE id = 99 AND name = 'zoe'",
            "db.operation.name": "SELECT", "server.address": "db.internal", "server.port": 5432,
        }):
            pass
        for case, cmd, name in REDIS_CASES:
            with b.span(web, case, name, SpanKind.CLIENT, {
                "db.system": "redis", "db.statement": cmd, "db.redis.database_index": 0,
                "net.peer.name": "cache.internal", "net.peer.port": 6379,
                "net.transport": "ip_tcp",
            }):
                pass
        for case, cmd, name in MEMCACHED_CASES:
            with b.span(web, case, name, SpanKind.CLIENT, {
                "db.system": "memcached", "db.statement": cmd,
                "net.peer.name": "memcached.internal", "net.peer.port": 11211,
            }):
                pass
        with b.span(web, "http_client_ok", "GET", SpanKind.CLIENT, {
            "http.request.method": "GET",
            "url.full": "https://api.example.com/v1/items?id=3&api_key=secret",
            "server.address": "api.example.com", "server.port": 443,
            "http.response.status_code": 200,
        }):
            pass
        with b.span(web, "http_client_404", "POST", SpanKind.CLIENT, {
            "http.request.method": "POST", "url.full": "http://inventory.internal:8080/reserve",
            "server.address": "inventory.internal", "server.port": 8080,
            "http.response.status_code": 404,
        }):
            pass
        with b.span(web, "http_client_503", "GET", SpanKind.CLIENT, {
            "http.request.method": "GET", "url.full": "http://pricing.internal/quote/77",
            "server.address": "pricing.internal", "http.response.status_code": 503,
        }) as s:
            s.set_status(Status(StatusCode.ERROR))
        with b.span(web, "internal_child", "render template", SpanKind.INTERNAL,
                    {"template.name": "user.html"}):
            with b.span(web, "internal_measured", "compute price", SpanKind.INTERNAL,
                        {"_dd.measured": 1}):
                pass

    # Old HTTP conventions, a 500 with an exception event.
    with b.span(web, "http_server_error", "POST /checkout", SpanKind.SERVER, {
        "http.method": "POST", "http.target": "/checkout?cart=9", "http.route": "/checkout",
        "http.status_code": 500, "http.scheme": "http", "net.host.name": "shop.example.com",
        "http.user_agent": "Mozilla/5.0",
    }) as s:
        try:
            raise ValueError("card declined: insufficient funds")
        except ValueError as exc:
            s.record_exception(exc, attributes={"exception.escaped": True})
        s.set_status(Status(StatusCode.ERROR, "card declined"))
        with b.span(web, "internal_error_only", "charge card", SpanKind.INTERNAL) as c:
            c.set_status(Status(StatusCode.ERROR, "gateway timeout"))

    # An unrouted server span (resource = method only), 4xx.
    with b.span(web, "http_server_404", "GET", SpanKind.SERVER, {
        "http.request.method": "GET", "url.path": "/nope", "http.response.status_code": 404,
    }):
        pass

    # gRPC server with a non-OK code.
    rpc = b.tracer("parity-rpc")
    with b.span(rpc, "grpc_server", "shop.Inventory/Reserve", SpanKind.SERVER, {
        "rpc.system": "grpc", "rpc.service": "shop.Inventory", "rpc.method": "Reserve",
        "rpc.grpc.status_code": 5, "server.address": "inventory.internal",
    }):
        pass

    # Messaging producer and consumer (separate traces, different service).
    mq = b.tracer("parity-worker")
    with b.span(mq, "producer", "orders publish", SpanKind.PRODUCER, {
        "messaging.system": "kafka", "messaging.operation": "publish",
        "messaging.destination.name": "orders", "server.address": "kafka.internal",
    }):
        pass
    with b.span(mq, "consumer", "orders process", SpanKind.CONSUMER, {
        "messaging.system": "kafka", "messaging.operation": "process",
        "messaging.destination.name": "orders",
    }):
        with b.span(web, "service_change_child", "GET", SpanKind.CLIENT, {
            "http.request.method": "GET", "url.full": "http://shop.example.com/api/ack",
            "http.response.status_code": 200,
        }):
            pass

    # Tag obfuscation rules of the Go Agent (libdatadog leaves these tags alone by default).
    tags = b.tracer("parity-tags")
    with b.span(tags, "tag_rules_root", "POST /pay", SpanKind.SERVER, {
        "http.request.method": "POST", "http.route": "/pay", "http.response.status_code": 200,
        "card.number": "4111 1111 1111 1111", "payment.note": "4242-4242-4242-4242",
        "order.id": "9876543210987",
    }):
        with b.span(tags, "http_client_userinfo", "GET", SpanKind.CLIENT, {
            "http.request.method": "GET",
            "url.full": "https://alice:s3cret@api.example.com/v1/me?token=abc",
            "server.address": "api.example.com", "http.response.status_code": 200,
        }):
            pass
        with b.span(tags, "redis_raw_command", "SET", SpanKind.CLIENT, {
            "db.system": "redis", "db.statement": "SET session:1 payload",
            "redis.raw_command": "SET session:1 payload EX 60",
            "net.peer.name": "cache.internal",
        }):
            pass
        with b.span(tags, "memcached_command", "set", SpanKind.CLIENT, {
            "db.system": "memcached", "memcached.command": "set k 0 0 5\r\nhello",
            "net.peer.name": "memcached.internal",
        }):
            pass
        with b.span(tags, "mongodb_query", "find", SpanKind.CLIENT, {
            "db.system": "mongodb", "db.operation": "find", "db.mongodb.collection": "users",
            "mongodb.query": '{"name": "alice", "age": {"$gt": 30}, "tags": ["a", "b"]}',
            "net.peer.name": "mongo.internal",
        }):
            pass
        with b.span(tags, "elasticsearch_body", "search", SpanKind.CLIENT, {
            "db.system": "elasticsearch",
            "elasticsearch.body": '{"query": {"match": {"user": "bob"}}, "size": 10}',
            "net.peer.name": "es.internal",
        }):
            pass
        with b.span(tags, "cassandra_query", "SELECT", SpanKind.CLIENT, {
            "db.system": "cassandra", "db.name": "ks",
            "db.statement": "SELECT * FROM users WHERE id = 5 AND name = 'zed'",
            "net.peer.name": "cassandra.internal",
        }):
            pass

    # Sampled out upstream: sent or dropped by the agent, but counted in stats either way.
    with b.span(web, "sampled_out_auto", "GET /health", SpanKind.SERVER, {
        "http.request.method": "GET", "http.route": "/health", "http.response.status_code": 200,
    }, remote_dd_state="s:0;t.dm:-1"):
        pass
    with b.span(web, "sampled_out_user", "GET /metrics", SpanKind.SERVER, {
        "http.request.method": "GET", "http.route": "/metrics", "http.response.status_code": 500,
    }, remote_dd_state="s:-1;t.dm:-4") as s:
        s.set_status(Status(StatusCode.ERROR))

    # Non-ASCII and oversized values.
    odd = b.tracer("Café Ünïcødé Service ☕")
    with b.span(odd, "non_ascii", "Résumé ✓ operation", SpanKind.SERVER, {
        "http.request.method": "GET", "http.route": "/café/ø/{名前}",
        "http.response.status_code": 201, "user.note": "naïve façade — 日本語 🚀",
        "ключ": "значение",
    }):
        pass
    big = b.tracer("s" * 120)
    with b.span(big, "oversized", _LONG_NAME, SpanKind.SERVER, {
        "http.request.method": "GET", "http.route": "/" + "r" * 6000,
        "http.response.status_code": 200, "big.value": _LONG_VALUE, _LONG_KEY: "long key",
        "db.statement.like": "x" * 6000,
    }):
        pass
    return b.finish()
