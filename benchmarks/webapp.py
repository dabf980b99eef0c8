"""End-to-end benchmark pieces: a small traced Flask app under waitress, and a load generator.

    python -m benchmarks.webapp serve MODE SINK_PORT PORT_FILE   # MODE: none | ours | otlp
    python -m benchmarks.webapp load PORT SECONDS CONNECTIONS     # prints {"rps": ...}

``serve``: a Flask app (``GET /users/<id>``: a SQL, a Redis and an HTTP client span under the
request span, like the benchmark's span set) served by waitress (4 threads) on 127.0.0.1.
``none`` installs no tracing at all; ``ours`` and ``otlp`` instrument Flask with
``FlaskInstrumentor`` and export through the SDK's ``BatchSpanProcessor`` (defaults) with our
``DatadogSpanExporter`` (v0.4) or ``OTLPSpanExporter`` (http/protobuf) to the null sink.

``load``: CONNECTIONS threads, each a keep-alive ``http.client`` connection, for SECONDS.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any


def serve(mode: str, sink_port: int, port_file: str) -> None:
    from flask import Flask
    from waitress.server import create_server

    app = Flask("bench")
    tracer: Any = None
    if mode != "none":
        from opentelemetry.instrumentation.flask import FlaskInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

        exporter: SpanExporter
        if mode == "ours":
            from otel_dd_bridge import DatadogSpanExporter

            exporter = DatadogSpanExporter(agent_url=f"http://127.0.0.1:{sink_port}",
                                           _environ={})
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{sink_port}/v1/traces")
        provider = TracerProvider(resource=Resource.create({"service.name": "bench-web"}))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
        tracer = provider.get_tracer("bench.app")

    from opentelemetry.trace import SpanKind

    @app.route("/users/<int:uid>")
    def user(uid: int) -> Any:
        if tracer is not None:
            with tracer.start_as_current_span("SELECT users", kind=SpanKind.CLIENT, attributes={
                "db.system": "postgresql", "db.name": "app",
                "db.statement": "SELECT id, name FROM users WHERE id = %s",
                "net.peer.name": "db", "net.peer.port": 5432}):
                pass
            with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT, attributes={
                "db.system": "redis", "db.statement": "GET user:1", "net.peer.name": "cache",
                "net.peer.port": 6379}):
                pass
            with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT, attributes={
                "http.request.method": "GET", "url.full": "http://profile/api/1",
                "server.address": "profile", "http.response.status_code": 200}):
                pass
        return {"id": uid, "name": "user"}

    srv: Any = create_server(app, host="127.0.0.1", port=0, threads=4)
    tmp = Path(port_file + ".tmp")
    tmp.write_text(str(srv.effective_port))
    tmp.rename(port_file)
    srv.run()


def load(port: int, seconds: float, connections: int) -> None:
    counts = [0] * connections
    errors = [0] * connections
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        n = 0
        while time.monotonic() < stop:
            try:
                conn.request("GET", f"/users/{n % 1000}")
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    counts[i] += 1
                else:
                    errors[i] += 1
            except OSError:
                errors[i] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            n += 1
        conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    print(json.dumps({"rps": sum(counts) / elapsed, "requests": sum(counts),
                      "errors": sum(errors)}))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        load(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
