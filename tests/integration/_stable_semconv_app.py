"""Run by test_integrations.py in a child process with ``OTEL_SEMCONV_STABILITY_OPT_IN=http``.

The instrumentations read that switch once per process, so the stable HTTP conventions
(``http.request.method``, ``http.response.status_code``, ``url.full``, ``error.type``, ...)
need a process of their own. A Flask app instrumented with FlaskInstrumentor is served in a
thread and called through ``requests`` (RequestsInstrumentor), so each request is one trace:
client span → server span. Spans go to ``DD_TRACE_AGENT_URL`` through DatadogSpanExporter.
"""

from __future__ import annotations

import sys
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import requests
from flask import Flask
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_dd_bridge import DatadogSpanExporter


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class _Threaded(WSGIServer):
    daemon_threads = True


def main() -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "stable-semconv"}))
    provider.add_span_processor(BatchSpanProcessor(DatadogSpanExporter()))
    app = Flask("stable-semconv")

    @app.route("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    @app.route("/boom")
    def boom() -> str:
        raise RuntimeError("stable boom")

    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
    RequestsInstrumentor().instrument(tracer_provider=provider)
    httpd = make_server("127.0.0.1", 0, app, server_class=_Threaded, handler_class=_Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_port}"
    codes = [requests.get(f"{base}{p}", timeout=5).status_code for p in ("/items/3", "/boom")]
    httpd.shutdown()
    provider.shutdown()
    print(codes)
    sys.exit(0 if codes == [200, 500] else 1)


if __name__ == "__main__":
    main()
