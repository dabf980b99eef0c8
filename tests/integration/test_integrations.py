"""Framework integrations end to end: real OTel instrumentations, real servers, real test agent.

Each test wires one OpenTelemetry instrumentation package to a TracerProvider whose
BatchSpanProcessor feeds :class:`DatadogSpanExporter`, drives a real server (a WSGI server in a
thread, redis-server, PostgreSQL), and reads the Datadog spans back from ddapm-test-agent. The
expected values are those of the rule book (/work/shared/spec/translation.md, profile "agent"):
§2.3 operation names, §3.1 resources, §4 types, §5 tags, §6 errors.

Instrumentors that patch globally are un-instrumented in ``finally`` so that no other test sees
them. Cassandra has no server here; its spans are built exactly as
``opentelemetry-instrumentation-cassandra`` builds them (see ``test_cassandra_shaped_spans``).
"""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

from otel_dd_bridge import DatadogSpanExporter
from tests.harness.servers import PostgresServer, RedisServer
from tests.harness.testagent import TestAgent

Span = dict[str, Any]


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()  # raises ServerUnavailable (test error), never skips
    yield server
    server.stop()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.stop()


class Tracing:
    """A TracerProvider exporting to the test agent, and a way to read what arrived."""

    def __init__(self, agent: TestAgent, service: str) -> None:
        self.agent = agent
        self.service = service
        self.exporter = DatadogSpanExporter(agent_url=agent.url)
        self.provider = TracerProvider(resource=Resource.create(
            {"service.name": service, "deployment.environment.name": "integration"}))
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter,
                                                            schedule_delay_millis=50))

    def spans(self, n: int, timeout: float = 10.0,
              ignore: Callable[[Span], bool] = lambda s: False) -> list[Span]:
        """Exactly the spans received (minus ``ignore``d ones) once at least ``n`` arrived, in
        start order; a later flush is awaited so that unexpected extra spans show up too."""
        def received() -> list[Span]:
            self.provider.force_flush()
            # only this test's service: a late flush from another test cannot interfere
            return [s for t in self.agent.traces() for s in t
                    if s["service"] == self.service and not ignore(s)]

        deadline = time.monotonic() + timeout
        got = received()
        while len(got) < n and time.monotonic() < deadline:
            time.sleep(0.05)
            got = received()
        time.sleep(0.15)
        got = received()
        assert len(got) == n, _show(got)
        return sorted(got, key=lambda s: (s["start"], s["span_id"]))


@pytest.fixture
def tracing(agent: TestAgent, request: pytest.FixtureRequest) -> Iterator[Tracing]:
    t = Tracing(agent, f"it-{request.node.name.removeprefix('test_').replace('_', '-')}"[:60])
    yield t
    t.provider.shutdown()


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


class _ThreadedWSGIServer(WSGIServer):
    daemon_threads = True


def serve(app: Callable[..., Any]) -> Iterator[str]:
    """Serve a WSGI app on a free loopback port in a thread; yields the base URL."""
    httpd = make_server("127.0.0.1", 0, app, server_class=_ThreadedWSGIServer,
                        handler_class=_Quiet)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _show(spans: list[Span]) -> str:
    return "\n".join(f"{s['name']} | {s['resource']} | {s['type']} | err={s['error']} | "
                     f"{s.get('meta')} | {s.get('metrics')}" for s in spans)


def check(span: Span, *, service: str, name: str, resource: str, type_: str, kind: str,
          error: int = 0) -> None:
    """The Datadog span fields every integration test asserts."""
    got = (span["service"], span["name"], span["resource"], span["type"],
           span["meta"].get("span.kind"), span["error"])
    assert got == (service, name, resource, type_, kind, error), _show([span])
    assert span["meta"]["env"] == "integration"
    if error:
        assert span["meta"]["otel.status_code"] == "Error"
    else:
        assert "error.msg" not in span["meta"] and "error.type" not in span["meta"]


def check_exception(span: Span, exc_type: str, message: str) -> None:
    """§6.1: error.type / error.msg / error.stack from the recorded ``exception`` event."""
    meta = span["meta"]
    assert meta["error.type"].endswith(exc_type), meta
    assert message in meta["error.msg"], meta
    assert "Traceback (most recent call last)" in meta["error.stack"]
    assert exc_type.rsplit(".", 1)[-1] in meta["error.stack"]
    assert meta["_dd.span_events.has_exception"] == "true"


# -- web frameworks ----------------------------------------------------------------------------

def _flask_app() -> Any:
    from flask import Flask

    app = Flask("integration-flask")

    @app.route("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    @app.route("/boom")
    def boom() -> str:
        raise RuntimeError("flask handler exploded")

    return app


def test_flask(tracing: Tracing) -> None:
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    app = _flask_app()
    FlaskInstrumentor().instrument_app(app, tracer_provider=tracing.provider)
    try:
        for base in serve(app):
            assert get(f"{base}/items/7")[0] == 200
            assert get(f"{base}/items/8")[0] == 200
            assert get(f"{base}/boom")[0] == 500
            assert get(f"{base}/no/such/page/123")[0] == 404
        ok1, ok2, boom, missing = tracing.spans(4)
    finally:
        FlaskInstrumentor().uninstrument_app(app)
    svc = tracing.service
    for s in (ok1, ok2):
        # §3.1: SERVER resource = method + http.route: one resource for every item id
        check(s, service=svc, name="http.server.request", resource="GET /items/<int:item_id>",
              type_="web", kind="server")
        assert s["meta"]["http.method"] == "GET"
        assert s["meta"]["http.route"] == "/items/<int:item_id>"
        assert s["metrics"]["http.status_code"] == 200
        assert s["meta"]["otel.library.name"] == "opentelemetry.instrumentation.flask"
        assert s["metrics"]["_top_level"] == 1 and s["parent_id"] == 0
    assert ok1["meta"]["http.url"].endswith("/items/7")  # the raw path stays a tag
    check(boom, service=svc, name="http.server.request", resource="GET /boom", type_="web",
          kind="server", error=1)
    assert boom["metrics"]["http.status_code"] == 500
    check_exception(boom, "RuntimeError", "flask handler exploded")
    # an unmatched URL has no http.route: the resource is the bare method, not the raw path
    check(missing, service=svc, name="http.server.request", resource="GET", type_="web",
          kind="server")
    assert missing["metrics"]["http.status_code"] == 404


def test_wsgi_middleware(tracing: Tracing) -> None:
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ["PATH_INFO"].startswith("/crash"):
            raise KeyError("no such key")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"plain wsgi\n"]

    wrapped = OpenTelemetryMiddleware(app, tracer_provider=tracing.provider)
    for base in serve(wrapped):
        assert get(f"{base}/users/41?x=1")[0] == 200
        assert get(f"{base}/crash/now")[0] == 500
    ok, crash = tracing.spans(2)
    svc = tracing.service
    # the bare middleware knows no route: resource = method (§3.1), the path is only a tag
    check(ok, service=svc, name="http.server.request", resource="GET", type_="web",
          kind="server")
    assert ok["meta"]["http.method"] == "GET" and "http.route" not in ok["meta"]
    assert ok["meta"]["http.url"].endswith("/users/41?x=1")
    assert ok["metrics"]["http.status_code"] == 200
    assert ok["meta"]["otel.library.name"] == "opentelemetry.instrumentation.wsgi"
    check(crash, service=svc, name="http.server.request", resource="GET", type_="web",
          kind="server", error=1)
    check_exception(crash, "KeyError", "no such key")


def test_django(tracing: Tracing, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "tests.integration.djangoapp.settings")
    import django
    from django.core.wsgi import get_wsgi_application
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    django.setup(set_prefix=False)
    DjangoInstrumentor().instrument(tracer_provider=tracing.provider)
    try:
        app = get_wsgi_application()  # after instrument(): the middleware list is read here
        for base in serve(app):
            status, body = get(f"{base}/orders/12/")
            assert (status, body) == (200, b'{"order": 12}')
            assert get(f"{base}/fail/")[0] == 500
        ok, fail = tracing.spans(2)
    finally:
        DjangoInstrumentor().uninstrument()
    svc = tracing.service
    check(ok, service=svc, name="http.server.request", resource="GET orders/<int:order_id>/",
          type_="web", kind="server")
    assert ok["meta"]["http.method"] == "GET"
    assert ok["meta"]["http.route"] == "orders/<int:order_id>/"
    assert ok["metrics"]["http.status_code"] == 200
    assert ok["meta"]["otel.library.name"] == "opentelemetry.instrumentation.django"
    check(fail, service=svc, name="http.server.request", resource="GET fail/", type_="web",
          kind="server", error=1)
    assert fail["metrics"]["http.status_code"] == 500
    check_exception(fail, "ValueError", "the order service is down")


# -- HTTP clients ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def backend() -> Iterator[str]:
    """A plain (uninstrumented) HTTP server for the client tests: 200, or 503 on /down."""
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ["PATH_INFO"].startswith("/down"):
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"down\n"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]

    yield from serve(app)


def _check_client(span: Span, svc: str, url: str, status: int, error: int) -> None:
    check(span, service=svc, name="http.client.request", resource="GET", type_="http",
          kind="client", error=error)
    # §3.1: a CLIENT resource is the method (+ url.template, which no Python client sets):
    # the raw URL never becomes the resource
    assert span["meta"]["http.method"] == "GET"
    assert span["metrics"]["http.status_code"] == status
    assert span["metrics"]["_dd.measured"] == 1  # §7.3 by kind: CLIENT spans are measured
    assert url in (span["meta"].get("http.url"), span["meta"].get("url.full")), span["meta"]
    if error:
        # status ERROR without a description and an int status code (metrics only): §6.2
        # gives no error.msg, exactly like the Agent (see /work/notes/readme_F.md)
        assert span["meta"]["otel.status_code"] == "Error"
        assert "error.msg" not in span["meta"] and "otel.status_description" not in span["meta"]


def test_requests(tracing: Tracing, backend: str) -> None:
    import requests
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    RequestsInstrumentor().instrument(tracer_provider=tracing.provider)
    try:
        assert requests.get(f"{backend}/a/1", timeout=5).status_code == 200
        assert requests.get(f"{backend}/down/2", timeout=5).status_code == 503
    finally:
        RequestsInstrumentor().uninstrument()
    ok, down = tracing.spans(2)
    svc = tracing.service
    _check_client(ok, svc, f"{backend}/a/1", 200, 0)
    _check_client(down, svc, f"{backend}/down/2", 503, 1)
    assert ok["meta"]["otel.library.name"] == "opentelemetry.instrumentation.requests"


def test_httpx_and_exporter_is_not_traced(tracing: Tracing, backend: str) -> None:
    """Global httpx instrumentation traces the app's calls but not the exporter's own POSTs
    (the transport suppresses instrumentation), so exporting never feeds itself."""
    import httpx
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().instrument(tracer_provider=tracing.provider)
    try:
        with httpx.Client() as client:
            assert client.get(f"{backend}/b/1").status_code == 200
            assert client.get(f"{backend}/down/3").status_code == 503
        # several export rounds happen while instrumented; none may produce a span
        ok, down = tracing.spans(2)
        tracing.provider.force_flush()
        time.sleep(0.2)
        assert len([s for t in tracing.agent.traces() for s in t
                    if s["service"] == tracing.service]) == 2
    finally:
        HTTPXClientInstrumentor().uninstrument()
    svc = tracing.service
    _check_client(ok, svc, f"{backend}/b/1", 200, 0)
    _check_client(down, svc, f"{backend}/down/3", 503, 1)
    assert ok["meta"]["otel.library.name"] == "opentelemetry.instrumentation.httpx"
    assert tracing.exporter.stats()["exported"] == 2


# -- databases ---------------------------------------------------------------------------------

def test_redis(tracing: Tracing, redis_server: RedisServer) -> None:
    import redis
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor().instrument(tracer_provider=tracing.provider)
    try:
        client = redis.Redis(host=redis_server.host, port=redis_server.port, db=0)
        client.set("donut:glazed", "sweet")
        assert client.get("donut:glazed") == b"sweet"
        with pytest.raises(redis.ResponseError):
            client.incr("donut:glazed")
        client.close()
    finally:
        RedisInstrumentor().uninstrument()
    set_, get_, incr = tracing.spans(3)
    svc = tracing.service
    # §2.3 row 3 / §3.1 rule 6 / §4: <db.system>.query, the statement, type redis
    check(set_, service=svc, name="redis.query", resource=set_["meta"]["db.statement"],
          type_="redis", kind="client")
    assert set_["resource"].startswith("SET") and "sweet" not in set_["resource"]
    check(get_, service=svc, name="redis.query", resource=get_["meta"]["db.statement"],
          type_="redis", kind="client")
    assert get_["resource"].startswith("GET")
    for s in (set_, get_):
        assert s["meta"]["db.system"] == "redis"
        assert s["meta"]["net.peer.name"] == "127.0.0.1"
        assert s["metrics"]["net.peer.port"] == redis_server.port
        assert s["metrics"]["_dd.measured"] == 1
    check(incr, service=svc, name="redis.query", resource=incr["meta"]["db.statement"],
          type_="redis", kind="client", error=1)
    check_exception(incr, "redis.exceptions.ResponseError", "not an integer")


def _is_connect(span: Span) -> bool:
    """SQLAlchemy's pool ``connect`` span (DB system, no statement: resource = span name)."""
    if span["resource"] != "connect":
        return False
    assert span["type"] == "sql" and span["meta"]["span.kind"] == "client", _show([span])
    return True


def test_sqlalchemy_postgresql(tracing: Tracing, postgres: PostgresServer) -> None:
    import sqlalchemy as sa
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    engine = sa.create_engine(postgres.sqlalchemy_url)
    SQLAlchemyInstrumentor().instrument(engine=engine, tracer_provider=tracing.provider,
                                        enable_commenter=False)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT datname FROM pg_catalog.pg_database WHERE datname = :n"),
                         {"n": "postgres"})
        with pytest.raises(sa.exc.ProgrammingError), engine.connect() as conn:
            conn.execute(sa.text("SELECT * FROM no_such_table"))
    finally:
        SQLAlchemyInstrumentor().uninstrument()
        engine.dispose()
    select, missing = tracing.spans(2, ignore=_is_connect)
    svc = tracing.service
    stmt = "SELECT datname FROM pg_catalog.pg_database WHERE datname = %(n)s"
    check(select, service=svc, name="postgresql.query", resource=stmt, type_="sql",
          kind="client")
    assert select["meta"]["db.system"] == "postgresql"
    assert select["meta"]["db.statement"] == stmt
    assert select["meta"]["db.name"] == "postgres"
    assert select["meta"]["net.peer.name"] == "127.0.0.1"
    assert select["metrics"]["net.peer.port"] == postgres.port
    assert select["meta"]["otel.library.name"] == "opentelemetry.instrumentation.sqlalchemy"
    check(missing, service=svc, name="postgresql.query", resource="SELECT * FROM no_such_table",
          type_="sql", kind="client", error=1)
    # SQLAlchemy sets the status description but records no exception event: §6.2 gives
    # error.msg from the description, and there is no error.type / error.stack
    assert missing["meta"]["error.msg"].startswith('relation "no_such_table" does not exist')
    assert missing["meta"]["error.msg"] == missing["meta"]["otel.status_description"]
    assert "error.type" not in missing["meta"] and "error.stack" not in missing["meta"]


def test_sqlalchemy_sqlite_fallback(tracing: Tracing, tmp_path: Any) -> None:
    import sqlalchemy as sa
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'beers.db'}")
    SQLAlchemyInstrumentor().instrument(engine=engine, tracer_provider=tracing.provider,
                                        enable_commenter=False)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT 1"))
    finally:
        SQLAlchemyInstrumentor().uninstrument()
        engine.dispose()
    [select] = tracing.spans(1, ignore=_is_connect)
    svc = tracing.service
    check(select, service=svc, name="sqlite.query", resource="SELECT 1", type_="sql",
          kind="client")
    assert select["meta"]["db.system"] == "sqlite"


def test_psycopg(tracing: Tracing, postgres: PostgresServer) -> None:
    import psycopg
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    PsycopgInstrumentor().instrument(tracer_provider=tracing.provider)
    try:
        with psycopg.connect(postgres.dsn) as conn:
            conn.execute("SELECT %s::int + 1", (41,)).fetchone()
            with pytest.raises(psycopg.errors.UndefinedTable):
                conn.execute("SELECT * FROM missing_beers")
    finally:
        PsycopgInstrumentor().uninstrument()
    select, missing = tracing.spans(2)
    svc = tracing.service
    check(select, service=svc, name="postgresql.query", resource="SELECT %s::int + 1",
          type_="sql", kind="client")
    assert select["meta"]["db.system"] == "postgresql"
    assert select["meta"]["db.name"] == "postgres"
    assert select["meta"]["net.peer.name"] == "127.0.0.1"
    assert select["metrics"]["net.peer.port"] == postgres.port
    assert select["meta"]["otel.library.name"] == "opentelemetry.instrumentation.psycopg"
    check(missing, service=svc, name="postgresql.query", resource="SELECT * FROM missing_beers",
          type_="sql", kind="client", error=1)
    check_exception(missing, "UndefinedTable", "missing_beers")


def test_cassandra_shaped_spans(tracing: Tracing) -> None:
    """Spans exactly as opentelemetry-instrumentation-cassandra builds them around
    ``Session.execute_async``: name ``Cassandra``, kind CLIENT, tracer ``__name__`` of the
    instrumentation module, ``db.name`` = the keyspace, ``db.system`` = ``cassandra``,
    ``net.peer.name`` = the cluster's contact points (a list), and ``db.statement`` only with
    ``include_db_statement=True`` (off by default)."""
    tracer = tracing.provider.get_tracer(
        "opentelemetry.instrumentation.cassandra", "0.66b1",
        schema_url="https://opentelemetry.io/schemas/1.11.0")

    def execute(statement: str | None) -> None:
        with tracer.start_as_current_span("Cassandra", kind=SpanKind.CLIENT) as span:
            span.set_attribute("db.name", "brewery")
            span.set_attribute("db.system", "cassandra")
            span.set_attribute("net.peer.name", ["127.0.0.1", "127.0.0.2"])
            if statement is not None:
                span.set_attribute("db.statement", statement)

    execute("SELECT * FROM beers WHERE name = 'ipa'")
    execute(None)  # the instrumentation's default: no statement
    with_stmt, without = tracing.spans(2)
    svc = tracing.service
    check(with_stmt, service=svc, name="cassandra.query",
          resource="SELECT * FROM beers WHERE name = 'ipa'", type_="cassandra", kind="client")
    # §3.1 rule 6 needs a statement; without one the resource falls back to the span name
    check(without, service=svc, name="cassandra.query", resource="Cassandra",
          type_="cassandra", kind="client")
    for s in (with_stmt, without):
        assert s["meta"]["db.system"] == "cassandra" and s["meta"]["db.name"] == "brewery"
        assert s["meta"]["net.peer.name"] == '["127.0.0.1","127.0.0.2"]'  # §5.1 array → JSON
        assert s["meta"]["otel.library.name"] == "opentelemetry.instrumentation.cassandra"



def test_stable_http_semconv_flask_and_requests(agent: TestAgent) -> None:
    """With ``OTEL_SEMCONV_STABILITY_OPT_IN=http`` the instrumentations emit the stable keys;
    §5.1 maps them to the Datadog ones and the trace spans client → server."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "OTEL_"))}
    env.update(OTEL_SEMCONV_STABILITY_OPT_IN="http", DD_TRACE_AGENT_URL=agent.url,
               DD_ENV="integration")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-m", "tests.integration._stable_semconv_app"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    agent.wait_for_traces(2)
    spans = [s for t in agent.traces() for s in t if s["service"] == "stable-semconv"]
    assert len(spans) == 4, _show(spans)
    by_id = {s["span_id"]: s for s in spans}
    servers = {s["resource"]: s for s in spans if s["meta"]["span.kind"] == "server"}
    assert set(servers) == {"GET /items/<int:item_id>", "GET /boom"}, _show(spans)
    for route, path, code in (("/items/<int:item_id>", "/items/3", 200), ("/boom", "/boom", 500)):
        server = servers[f"GET {route}"]
        client = by_id[server["parent_id"]]  # the trace spans client → server
        assert client["parent_id"] == 0 and client["trace_id"] == server["trace_id"]
        for span in (client, server):
            assert span["meta"]["http.method"] == "GET"  # from http.request.method
            assert "http.request.method" not in span["meta"]  # R2 keeps only the mapped key
            assert span["metrics"]["http.status_code"] == code  # from http.response.status_code
        assert client["meta"]["http.url"].endswith(path)  # from url.full
        check(server, service="stable-semconv", name="http.server.request",
              resource=f"GET {route}", type_="web", kind="server", error=int(code == 500))
        check(client, service="stable-semconv", name="http.client.request", resource="GET",
              type_="http", kind="client", error=int(code == 500))
        assert server["meta"]["http.route"] == route
    check_exception(servers["GET /boom"], "RuntimeError", "stable boom")
    # the stable conventions put the status code in an `error.type` attribute on client
    # errors: it lands in meta error.type (§5.1) and there is still no error.msg (§6.2)
    boom_client = by_id[servers["GET /boom"]["parent_id"]]
    assert boom_client["meta"]["error.type"] == "500"
    assert "error.msg" not in boom_client["meta"]
