"""A scripted local HTTP server on 127.0.0.1 for failure tests (no such real agent behaviour
can be provoked on demand). Each response is written in one send with TCP_NODELAY."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    body: bytes = b'{"rate_by_service":{"service:,env:":1.0}}'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FaultServer:
    """Replies from ``script(request_index, Seen) -> Reply``; records every request."""

    def __init__(self, script: Callable[[int, Seen], Reply]) -> None:
        self.script = script
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with outer._lock:
                    idx = len(outer.requests)
                    outer.requests.append(seen)
                reply = outer.script(idx, seen)
                if reply.delay:
                    time.sleep(reply.delay)
                head = [f"HTTP/1.1 {reply.status} X", f"Content-Length: {len(reply.body)}",
                        "Content-Type: application/json"]
                head += [f"{k}: {v}" for k, v in reply.headers.items()]
                try:
                    self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + reply.body)
                except OSError:
                    pass

            do_PUT = do_POST = do_GET = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
