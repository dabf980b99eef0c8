"""A null HTTP sink for the benchmarks: reads each request, answers 200 at once, keeps nothing.

    python -m benchmarks.nullsink PORT_FILE [--port N]

Runs in its own process (so it never competes with the measured exporter for the GIL),
binds 127.0.0.1, writes the bound port to ``PORT_FILE`` once listening, serves HTTP/1.1
keep-alive connections, one thread each. Every response (status line, headers and body) goes
out in **one** ``sendall`` on a socket with ``TCP_NODELAY``: a sink that writes them
separately hits Nagle + delayed ACK and adds ~40 ms per request (performance.md).

Bodies: ``/v0.4/traces`` and ``/v0.5/traces`` get the Agent's ``{"rate_by_service":{}}``,
``/v1/traces`` (OTLP) an empty protobuf, anything else ``{}``. Counts requests and body bytes
per path; ``GET /_stats`` returns them as JSON.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
from pathlib import Path

_COUNTS: dict[str, list[int]] = {}
_LOCK = threading.Lock()


def _response(path: str) -> bytes:
    if path.startswith("/v0.4/") or path.startswith("/v0.5/"):
        body, ctype = b'{"rate_by_service":{}}', b"application/json"
    elif path == "/v1/traces":
        body, ctype = b"", b"application/x-protobuf"
    elif path == "/_stats":
        with _LOCK:
            body, ctype = json.dumps(_COUNTS).encode(), b"application/json"
    else:
        body, ctype = b"{}", b"application/json"
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
        + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def _serve(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            path = lines[0].split(b" ")[1].decode("latin-1").split("?")[0]
            length, chunked = 0, False
            for line in lines[1:]:
                k, _, v = line.partition(b":")
                k = k.strip().lower()
                if k == b"content-length":
                    length = int(v.strip())
                elif k == b"transfer-encoding" and b"chunked" in v.lower():
                    chunked = True
            if chunked:
                total = 0
                while True:
                    while b"\r\n" not in buf:
                        buf += conn.recv(65536)
                    size_line, _, buf = buf.partition(b"\r\n")
                    size = int(size_line.split(b";")[0], 16)
                    while len(buf) < size + 2:
                        buf += conn.recv(65536)
                    buf = buf[size + 2 :]
                    total += size
                    if size == 0:
                        break
                length = total
            else:
                while len(buf) < length:
                    data = conn.recv(max(65536, length - len(buf)))
                    if not data:
                        return
                    buf += data
                buf = buf[length:]
            with _LOCK:
                c = _COUNTS.setdefault(path, [0, 0])
                c[0] += 1
                c[1] += length
            conn.sendall(_response(path))
    except (OSError, ValueError, IndexError):
        return
    finally:
        conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("port_file")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", args.port))
    srv.listen(128)
    tmp = Path(args.port_file + ".tmp")
    tmp.write_text(str(srv.getsockname()[1]))
    tmp.rename(args.port_file)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=_serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
