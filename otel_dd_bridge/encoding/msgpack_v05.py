"""Agent API v0.5: ``/v0.5/traces``, the string-table ("dictionary") format.

Body (``pkg/trace/api/version.go`` in the Agent, normative)::

    array(2)
      [0] array(S) of str       the string table; index 0 is always ""
      [1] array(N traces)
            array(M spans)
              array(12)         exactly 12 elements, in this order:
                 0 service    uint32   string-table index
                 1 name       uint32   index
                 2 resource   uint32   index
                 3 trace_id   uint64   low 64 bits
                 4 span_id    uint64
                 5 parent_id  uint64   0 for a root
                 6 start      int64    ns since epoch
                 7 duration   int64    ns
                 8 error      int32
                 9 meta       map uint32 -> uint32   (key index -> value index)
                10 metrics    map uint32 -> float64  (key index -> value)
                11 type       uint32   index ("" -> 0)

No nils anywhere. v0.5 cannot carry ``meta_struct`` or native span events; events and links
are JSON strings in meta (``events``, ``_dd.span_links``), as with v0.4 here. The table is built
per request, so every index is in range for the body that carries it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import msgpack

from otel_dd_bridge.model import TraceChunk

__all__ = ["V05Encoder"]


class V05Encoder:
    """Encoder for ``/v0.5/traces``."""

    api_version = "v0.5"
    path = "/v0.5/traces"
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
        """Encode chunks as one v0.5 body with its own string table."""
        table: dict[str, int] = {"": 0}
        # dict.setdefault with len(table) interns in one C call per string.
        intern = table.setdefault
        traces = []
        for chunk in chunks:
            spans = []
            for s in chunk.spans:
                meta = {intern(k, len(table)): intern(v, len(table)) for k, v in s.meta.items()}
                metrics = {intern(k, len(table)): float(v) for k, v in s.metrics.items()}
                spans.append(
                    (
                        intern(s.service, len(table)),
                        intern(s.name, len(table)),
                        intern(s.resource, len(table)),
                        s.trace_id,
                        s.span_id,
                        s.parent_id,
                        s.start,
                        s.duration,
                        s.error,
                        meta,
                        metrics,
                        intern(s.type, len(table)),
                    )
                )
            traces.append(spans)
        data: bytes = self._packer().pack((list(table), traces))
        return data
