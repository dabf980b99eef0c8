"""A Flask service traced by Datadog's own tracer (run with ``ddtrace-run`` from its venv).

Routes: ``/hello`` answers; ``/call?url=...`` calls another service, injecting Datadog headers
with ddtrace's own propagator. Port from ``DDSVC_PORT``.
"""

from __future__ import annotations

import os
import urllib.request

from ddtrace.propagation.http import HTTPPropagator
from ddtrace.trace import tracer
from flask import Flask, request

app = Flask(__name__)


@app.route("/hello")
def hello() -> str:
    return "hello from ddtrace\n"


@app.route("/call")
def call() -> str:
    headers: dict[str, str] = {}
    span = tracer.current_span()
    assert span is not None
    HTTPPropagator.inject(span.context, headers)
    req = urllib.request.Request(request.args["url"], headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read().decode()


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ["DDSVC_PORT"]))
