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

The compiled encoder (:mod:`._fastpack`, optional) is tried first and writes the same bytes,
string-table order included; ``None`` from it (anything but the plain shape) means pack here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from otel_dd_bridge.encoding._pack import NO_EXTENSIONS, Packer, _state
from otel_dd_bridge.model import TraceChunk

__all__ = ["V05Encoder"]

_compiled: Callable[[Sequence[TraceChunk]], bytes | None] | None = None
if not NO_EXTENSIONS:
    try:
        from otel_dd_bridge.encoding._fastpack import encode_v05 as _compiled
    except ImportError:  # pragma: no cover - depends on the install
        _compiled = None


class V05Encoder:
    """Encoder for ``/v0.5/traces``."""

    api_version = "v0.5"
    path = "/v0.5/traces"
    content_type = "application/msgpack"

    def __init__(self) -> None:
        self._packer = Packer()

    def encode(self, chunks: Sequence[TraceChunk]) -> bytes:
        """Encode chunks as one v0.5 body with its own string table."""
        if _compiled is not None and _state["compiled"]:
            body = _compiled(chunks)
            if body is not None:
                return body
        # A hit is one C-level subscript; only a new string runs __missing__. Strings are
        # numbered in first-use order: per span meta (key, value), metrics keys, then service,
        # name, resource, type.
        t = _Table()
        t[""] = 0
        traces = []
        for chunk in chunks:
            spans = []
            for s in chunk.spans:
                meta = {t[k]: t[v] for k, v in s.meta.items()}
                metrics = {t[k]: float(v) for k, v in s.metrics.items()}
                spans.append(
                    (
                        t[s.service],
                        t[s.name],
                        t[s.resource],
                        s.trace_id,
                        s.span_id,
                        s.parent_id,
                        s.start,
                        s.duration,
                        s.error,
                        meta,
                        metrics,
                        t[s.type],
                    )
                )
            traces.append(spans)
        data: bytes = self._packer.pack((list(t), traces))
        return data


class _Table(dict[str, int]):
    """The v0.5 string table: ``t[s]`` is the index of ``s``, assigned on first use."""

    __slots__ = ()

    def __missing__(self, key: str) -> int:
        i = self[key] = len(self)
        return i
