"""A tiny Flask app to run under the OpenTelemetry launcher:

    OTEL_TRACES_EXPORTER=datadog OTEL_SERVICE_NAME=hello-flask \
        opentelemetry-instrument python examples/flask_app/app.py

The launcher (from ``opentelemetry-instrumentation`` + ``opentelemetry-distro``) builds
``DatadogSpanExporter()`` through its ``datadog`` entry point and instruments Flask.
Set ``FLASK_APP_PORT`` to choose the port (default 5000); ``/shutdown`` stops it.
"""

from __future__ import annotations

import os
import threading

from flask import Flask

app = Flask(__name__)


@app.route("/hello/<name>")
def hello(name: str) -> str:
    return f"hello {name}\n"


@app.route("/fail")
def fail() -> str:
    raise RuntimeError("this route always fails")


@app.route("/shutdown")
def shutdown() -> str:
    # os._exit would skip the SDK's atexit flush; exit the main thread normally instead.
    threading.Timer(0.2, lambda: os.kill(os.getpid(), 2)).start()
    return "bye\n"


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("FLASK_APP_PORT", "5000")))
