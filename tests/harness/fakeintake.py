"""A local stand-in for the Datadog intake (``trace.agent.<site>``), on 127.0.0.1 only.

Nothing real can play the intake on this machine, so this server records what it is sent and
decodes it **independently of the exporter's code**: protobuf bodies are read by the tiny
generic wire-format reader below with its own field-number table, written from
``spec/wire.md`` §3.3 (it never imports ``otel_dd_bridge``); stats bodies are gzip + msgpack.
Tests additionally parse the same bytes with the generated classes and compare.

In-process::

    with FakeIntake() as intake:                 # a thread, a free port on 127.0.0.1
        exporter = DatadogSpanExporter(mode="agentless", api_key="k", intake_url=intake.url)
        ...
        intake.wait_for(1, path=TRACES_PATH)
        spans = intake.spans()                   # decoded span dicts, wire.md field names
        intake.reply(403)                        # the next request gets 403 (see reply())

Standalone (helper D runs it inside a network namespace next to the mini-agent)::

    python -m tests.harness.fakeintake --port 0 --out requests.jsonl

prints ``fakeintake listening on http://127.0.0.1:PORT`` and writes one JSON line per request
(``method``, ``path``, ``headers``, ``body_b64``, ``time``), flushed per request;
:func:`load_jsonl` reads such a file back into :class:`Request` objects that the same decoders
accept.

Every response (status line, headers and body) goes out in **one** write with ``TCP_NODELAY``:
a separate body write costs ~40 ms per request through Nagle + delayed ACK (performance.md).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "AGENT_PAYLOAD_SCHEMA",
    "STATS_PATH",
    "TRACES_PATH",
    "FakeIntake",
    "Reply",
    "Request",
    "decode_message",
    "decode_agent_payload",
    "load_jsonl",
]

TRACES_PATH = "/api/v0.2/traces"
STATS_PATH = "/api/v0.2/stats"

# --------------------------------------------------------------------------- protobuf reader
# Field tables from wire.md §3.3: message -> {number: (name, kind)}. Kinds: scalar type names,
# ("msg", Name), ("rep", kind) for repeated, ("map", key kind, value kind).

AGENT_PAYLOAD_SCHEMA: dict[str, dict[int, tuple[str, Any]]] = {
    "AgentPayload": {
        1: ("hostName", "string"), 2: ("env", "string"),
        5: ("tracerPayloads", ("rep", ("msg", "TracerPayload"))),
        6: ("tags", ("map", "string", "string")), 7: ("agentVersion", "string"),
        8: ("targetTPS", "double"), 9: ("errorTPS", "double"),
        10: ("rareSamplerEnabled", "bool"),
    },
    "TracerPayload": {
        1: ("containerID", "string"), 2: ("languageName", "string"),
        3: ("languageVersion", "string"), 4: ("tracerVersion", "string"),
        5: ("runtimeID", "string"), 6: ("chunks", ("rep", ("msg", "TraceChunk"))),
        7: ("tags", ("map", "string", "string")), 8: ("env", "string"),
        9: ("hostname", "string"), 10: ("appVersion", "string"),
        11: ("containerDebug", ("msg", "ContainerDebug")),
    },
    "ContainerDebug": {
        1: ("error", "string"), 2: ("latencyMs", "int64"), 3: ("wasBuffered", "bool"),
        4: ("bufferMs", "int64"), 5: ("bufferEvictionReason", "string"),
    },
    "TraceChunk": {
        1: ("priority", "int32"), 2: ("origin", "string"),
        3: ("spans", ("rep", ("msg", "Span"))), 4: ("tags", ("map", "string", "string")),
        5: ("droppedTrace", "bool"),
    },
    "Span": {
        1: ("service", "string"), 2: ("name", "string"), 3: ("resource", "string"),
        4: ("traceID", "uint64"), 5: ("spanID", "uint64"), 6: ("parentID", "uint64"),
        7: ("start", "int64"), 8: ("duration", "int64"), 9: ("error", "int32"),
        10: ("meta", ("map", "string", "string")), 11: ("metrics", ("map", "string", "double")),
        12: ("type", "string"), 13: ("meta_struct", ("map", "string", "bytes")),
        14: ("spanLinks", ("rep", ("msg", "SpanLink"))),
        15: ("spanEvents", ("rep", ("msg", "SpanEvent"))),
    },
    "SpanLink": {
        1: ("traceID", "uint64"), 2: ("traceID_high", "uint64"), 3: ("spanID", "uint64"),
        4: ("attributes", ("map", "string", "string")), 5: ("tracestate", "string"),
        6: ("flags", "uint32"),
    },
    "SpanEvent": {
        1: ("time_unix_nano", "fixed64"), 2: ("name", "string"),
        3: ("attributes", ("map", "string", ("msg", "AttributeAnyValue"))),
    },
    "AttributeAnyValue": {
        1: ("type", "enum"), 2: ("string_value", "string"), 3: ("bool_value", "bool"),
        4: ("int_value", "int64"), 5: ("double_value", "double"),
        6: ("array_value", ("msg", "AttributeArray")),
    },
    "AttributeArray": {1: ("values", ("rep", ("msg", "AttributeArrayValue")))},
    "AttributeArrayValue": {
        1: ("type", "enum"), 2: ("string_value", "string"), 3: ("bool_value", "bool"),
        4: ("int_value", "int64"), 5: ("double_value", "double"),
    },
}

# wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32
_WIRE_OF = {
    "string": 2, "bytes": 2, "uint64": 0, "int64": 0, "int32": 0, "uint32": 0, "bool": 0,
    "enum": 0, "double": 1, "fixed64": 1,
}
_DEFAULTS = {
    "string": "", "bytes": b"", "uint64": 0, "int64": 0, "int32": 0, "uint32": 0, "bool": False,
    "enum": 0, "double": 0.0, "fixed64": 0,
}


class WireError(ValueError):
    """The bytes are not valid protobuf for the schema."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint longer than 10 bytes")


def iter_fields(buf: bytes) -> Iterable[tuple[int, int, Any]]:
    """Yield ``(field number, wire type, raw value)``: int, 8/4 bytes, or the LEN bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise WireError("field number 0")
        if wt == 0:
            v, pos = _varint(buf, pos)
        elif wt == 1:
            v, pos = buf[pos:pos + 8], pos + 8
        elif wt == 2:
            n, pos = _varint(buf, pos)
            v, pos = buf[pos:pos + n], pos + n
        elif wt == 5:
            v, pos = buf[pos:pos + 4], pos + 4
        else:
            raise WireError(f"unsupported wire type {wt}")
        if pos > len(buf):
            raise WireError("truncated field")
        yield num, wt, v


def _scalar(kind: str, wt: int, v: Any) -> Any:
    if _WIRE_OF[kind] != wt:
        raise WireError(f"{kind} sent with wire type {wt}")
    if kind == "string":
        return bytes(v).decode("utf-8")  # proto3 strings must be valid UTF-8
    if kind == "bytes":
        return bytes(v)
    if kind == "double":
        return struct.unpack("<d", v)[0]
    if kind == "fixed64":
        return struct.unpack("<Q", v)[0]
    if kind == "bool":
        return v != 0
    if kind in ("int64", "int32", "enum"):
        v &= (1 << 64) - 1
        return v - (1 << 64) if v >> 63 else v
    if kind == "uint32":
        if v >> 32:
            raise WireError("uint32 out of range")
    return v


def _value(kind: Any, wt: int, v: Any, schema: dict[str, dict[int, tuple[str, Any]]]) -> Any:
    if isinstance(kind, tuple) and kind[0] == "msg":
        if wt != 2:
            raise WireError(f"message sent with wire type {wt}")
        return decode_message(kind[1], bytes(v), schema)
    return _scalar(kind, wt, v)


def _default(kind: Any, schema: dict[str, dict[int, tuple[str, Any]]]) -> Any:
    if isinstance(kind, tuple):
        if kind[0] == "rep":
            return []
        if kind[0] == "map":
            return {}
        return None  # absent sub-message
    return _DEFAULTS[kind]


def decode_message(
    name: str, buf: bytes, schema: dict[str, dict[int, tuple[str, Any]]] = AGENT_PAYLOAD_SCHEMA
) -> dict[str, Any]:
    """Decode ``buf`` as message ``name`` into a dict keyed by the wire.md field names.

    Absent fields get their proto3 defaults; fields not in the table are listed (by number) in
    ``"_unknown"`` so a test can assert that nothing unexpected was sent.
    """
    fields = schema[name]
    out: dict[str, Any] = {fname: _default(kind, schema) for fname, kind in fields.values()}
    out["_unknown"] = []
    for num, wt, v in iter_fields(buf):
        spec = fields.get(num)
        if spec is None:
            out["_unknown"].append(num)
            continue
        fname, kind = spec
        if isinstance(kind, tuple) and kind[0] == "rep":
            out[fname].append(_value(kind[1], wt, v, schema))
        elif isinstance(kind, tuple) and kind[0] == "map":
            if wt != 2:
                raise WireError(f"map entry sent with wire type {wt}")
            key, val = _default(kind[1], schema), _default(kind[2], schema)
            for enum_, ewt, ev in iter_fields(bytes(v)):
                if enum_ == 1:
                    key = _value(kind[1], ewt, ev, schema)
                elif enum_ == 2:
                    val = _value(kind[2], ewt, ev, schema)
            out[fname][key] = val
        else:
            out[fname] = _value(kind, wt, v, schema)
    return out


def decode_agent_payload(raw: bytes) -> dict[str, Any]:
    """Decode an uncompressed ``AgentPayload``."""
    return decode_message("AgentPayload", raw)


# --------------------------------------------------------------------------- the server


@dataclass
class Request:
    """One request as received (headers with lower-cased names)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    time: float = field(default_factory=time.time)

    def raw(self) -> bytes:
        """The body, gunzipped when ``Content-Encoding: gzip``."""
        if self.headers.get("content-encoding", "").lower() == "gzip":
            return gzip.decompress(self.body)
        return self.body

    def agent_payload(self) -> dict[str, Any]:
        return decode_agent_payload(self.raw())

    def stats_payload(self) -> Any:
        import msgpack

        return msgpack.unpackb(self.raw(), raw=False, strict_map_key=False)

    def to_json(self) -> str:
        return json.dumps({
            "time": self.time, "method": self.method, "path": self.path,
            "headers": self.headers, "body_b64": base64.b64encode(self.body).decode("ascii"),
        })

    @classmethod
    def from_json(cls, line: str) -> Request:
        d = json.loads(line)
        return cls(d["method"], d["path"], d["headers"], base64.b64decode(d["body_b64"]),
                   d["time"])


@dataclass
class Reply:
    """How to answer one request. ``close=True`` drops the connection without an answer."""

    status: int = 202
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    close: bool = False


_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
            413: "Payload Too Large", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


class FakeIntake:
    """Threaded HTTP server on 127.0.0.1 that records every request and answers from a script.

    Answers: queued one-shot replies first (:meth:`reply`), else ``default`` (202 ``{}``), or
    whatever ``script(index, request)`` returns when given (``None`` from it: the default).
    """

    def __init__(
        self,
        *,
        port: int = 0,
        default: Reply | None = None,
        script: Callable[[int, Request], Reply | None] | None = None,
        out: Any = None,
    ) -> None:
        self.requests: list[Request] = []
        self.default = default or Reply()
        self.script = script
        self._queue: deque[tuple[str | None, Reply]] = deque()
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._out = out
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _read_body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _handle(self) -> None:
                req = Request(self.command, self.path,
                              {k.lower(): v for k, v in self.headers.items()}, self._read_body())
                reply = outer._record(req)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.close:
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                head = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}",
                        f"Content-Length: {len(reply.body)}", "Content-Type: application/json"]
                head += [f"{k}: {v}" for k, v in reply.headers.items()]
                try:
                    self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + reply.body)
                except OSError:
                    pass

            do_POST = do_PUT = do_GET = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True, name="fakeintake")

    # -- server life
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeIntake:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeIntake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting
    def reply(self, status: int = 202, *, times: int = 1, body: bytes = b"{}",
              headers: dict[str, str] | None = None, delay: float = 0.0,
              close: bool = False, path: str | None = None) -> None:
        """Answer the next ``times`` requests (to ``path`` only, when given) this way; then
        the default again. Queued replies are used in the order they were queued."""
        with self._lock:
            for _ in range(times):
                self._queue.append((path, Reply(status, body, dict(headers or {}), delay, close)))

    def _record(self, req: Request) -> Reply:
        with self._cv:
            idx = len(self.requests)
            self.requests.append(req)
            queued = None
            for i, (qpath, qreply) in enumerate(self._queue):
                if qpath is None or qpath == req.path:
                    queued = qreply
                    del self._queue[i]
                    break
            if self._out is not None:
                self._out.write(req.to_json() + "\n")
                self._out.flush()
            self._cv.notify_all()
        if queued is not None:
            return queued
        if self.script is not None:
            got = self.script(idx, req)
            if got is not None:
                return got
        return self.default

    # -- reading back
    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self._queue.clear()

    def wait_for(self, n: int, *, path: str | None = None, timeout: float = 10.0) -> list[Request]:
        """Wait until at least ``n`` requests (to ``path`` if given) arrived; return them."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                got = [r for r in self.requests if path is None or r.path == path]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(got)} of {n} requests to {path or 'any path'}")
                self._cv.wait(left)

    def of_path(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def trace_payloads(self) -> list[dict[str, Any]]:
        """Every ``/api/v0.2/traces`` body, decoded with the independent reader."""
        return [r.agent_payload() for r in self.of_path(TRACES_PATH)]

    def chunks(self) -> list[dict[str, Any]]:
        return [c for p in self.trace_payloads() for tp in p["tracerPayloads"]
                for c in tp["chunks"]]

    def spans(self) -> list[dict[str, Any]]:
        return [s for c in self.chunks() for s in c["spans"]]

    def stats_payloads(self) -> list[Any]:
        """Every ``/api/v0.2/stats`` body: gzip msgpack ``StatsPayload`` (PascalCase keys)."""
        return [r.stats_payload() for r in self.of_path(STATS_PATH)]


def load_jsonl(path: str) -> list[Request]:
    """Read the ``--out`` file of a standalone fake intake."""
    with open(path, encoding="utf-8") as f:
        return [Request.from_json(line) for line in f if line.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.harness.fakeintake",
                                 description="local fake Datadog intake on 127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="port (0: a free one, printed)")
    ap.add_argument("--out", required=True, help="append one JSON line per request here")
    ap.add_argument("--status", type=int, default=202, help="status of every answer")
    args = ap.parse_args(argv)
    with open(args.out, "a", encoding="utf-8") as out:
        intake = FakeIntake(port=args.port, default=Reply(args.status), out=out)
        print(f"fakeintake listening on {intake.url}", flush=True)
        try:
            intake._server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            intake._server.server_close()
    return 0


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # ends serve_forever() in main(), which closes the socket and file


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, _on_sigterm)
    sys.exit(main())
