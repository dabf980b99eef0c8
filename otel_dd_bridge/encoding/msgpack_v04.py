"""Agent API v0.4: ``PUT/POST /v0.4/traces``, ``Content-Type: application/msgpack``.

Body (``pkg/trace/api/version.go`` in the Agent)::

    array(N traces)             one element per trace chunk
      array(M spans)            all spans of the chunk share trace_id
        map(12)                 one span, keys are msgpack str:
          trace_id   uint64     low 64 bits of the trace id (upper half: meta ``_dd.p.tid``)
          span_id    uint64
          parent_id  uint64     0 for a root
          service    str
          name       str        the operation name
          resource   str
          type       str        may be ""
          start      int64      ns since the Unix epoch
          duration   int64      ns
          error      int32      0 or 1
          meta       map str -> str
          metrics    map str -> float64 (ints are accepted by the Agent and packed as ints)

Span events and links travel as JSON in meta (``events``, ``_dd.span_links``) exactly as the
Agent's OTLP ingest stores them, so the newer strict keys (``meta_struct``, ``span_links``,
``span_events``) are never written: an empty or nil value there fails the whole request on the
Go Agent (wire.md §1.2). Strings are packed as msgpack str (UTF-8); translation guarantees valid
UTF-8 and the Agent's length limits.

One ``msgpack.Packer`` is reused per thread (the C packer is not thread-safe; the SDK's
``SimpleSpanProcessor`` calls ``export()`` from any thread).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import msgpack

from otel_dd_bridge.model import TraceChunk

__all__ = ["V04Encoder"]


class V04Encoder:
    """Encoder for ``/v0.4/traces``."""

    api_version = "v0.4"
    path = "/v0.4/traces"
    content_type = "application/msgpack"

    def __init__(self) -> None:
        self._local = threading.local()

    def _packer(self) -> msgpack.Packer:
        packer: msgpack.Packer | None = getattr(self._local, "packer", None)
        if packer is None:
            packer = msgpack.Packer(autoreset=True, use_bin_type=True)
            self._local.packer = packer
        return packer

    def encode(self, chunks: Sequence[TraceChunk]) -> bytes:
        """Encode chunks as one v0.4 body."""
        payload = [
            [
                {
                    "trace_id": s.trace_id,
                    "span_id": s.span_id,
                    "parent_id": s.parent_id,
                    "service": s.service,
                    "name": s.name,
                    "resource": s.resource,
                    "type": s.type,
                    "start": s.start,
                    "duration": s.duration,
                    "error": s.error,
                    "meta": s.meta,
                    "metrics": s.metrics,
                }
                for s in chunk.spans
            ]
            for chunk in chunks
        ]
        data: bytes = self._packer().pack(payload)
        return data
