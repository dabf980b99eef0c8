"""taster: tells the dominant flavour of a beer style (the workshop's second service).

``GET /taste?style=&abv=`` answers ``{"flavour": ...}``; an unknown style is a 400. Like
matchmaker it has no tracing code: ``opentelemetry-instrument`` instruments Flask, and the
trace context arrives in the request headers (W3C ``traceparent`` and Datadog ``x-datadog-*``).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, abort, jsonify, request

FLAVOURS = {"ipa": "bitter", "stout": "roasty", "sour": "tart", "lager": "crisp"}
app = Flask("taster")


@app.route("/taste")
def taste() -> Any:
    style = request.args.get("style", "")
    if style not in FLAVOURS:
        abort(400, description=f"unknown style {style!r}")
    abv = float(request.args.get("abv", "5"))
    return jsonify({"style": style, "flavour": FLAVOURS[style], "strong": abv >= 7.5})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("TASTER_PORT", "5002")), threaded=True)
