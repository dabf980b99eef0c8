"""Agent API v0.4: ``PUT/POST /v0.4/traces``, ``Content-Type: application/msgpack``.

Body (``pkg/trace/api/version.go`` in the Agent)::

    array(N traces)             one element per trace chunk
      array(M spans)            all spans of the chunk share trace_id
        map(12..15)             one span, keys are msgpack str:
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
          meta_struct  map str -> bin           only when non-empty
          span_links   array of link maps       only when non-empty
          span_events  array of event maps      only when non-empty

The last three keys follow the Go Agent's **strict** decoding (wire.md §1.2), where a violation
fails the whole request with 400: they are omitted when empty or ``None`` (never nil);
``meta_struct`` values are packed as bin; a link is ``{trace_id, [trace_id_high], span_id,
[attributes str->str], [tracestate str], [flags uint32]}`` with non-negative ints; an event is
``{name, time_unix_nano (non-negative int), [attributes]}`` with typed attribute values
``{"type": 0..4, "<kind>_value": ...}``, ``double_value`` always a msgpack float, array values
of scalars only. The translation itself keeps events and links as JSON in meta (``events``,
``_dd.span_links``), exactly as the Agent's OTLP ingest stores them, and leaves these keys
unset. Strings are packed as msgpack str (UTF-8); translation guarantees valid UTF-8 and the
Agent's length limits.

Packing: ormsgpack when installed (same bytes, about twice as fast), else one C
``msgpack.Packer`` reused per thread (it is not thread-safe; the SDK's
``SimpleSpanProcessor`` calls ``export()`` from any thread); see :mod:`._pack`. Before that,
the compiled encoder (:mod:`._fastpack`, optional) writes the same bytes straight from the
spans; it returns ``None`` for anything but the plain shape, and this module packs instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from otel_dd_bridge.encoding._pack import NO_EXTENSIONS, Packer, _state
from otel_dd_bridge.model import DDSpan, DDSpanEvent, DDSpanLink, TraceChunk

__all__ = ["V04Encoder"]

_compiled: Callable[[Sequence[TraceChunk]], bytes | None] | None = None
if not NO_EXTENSIONS:
    try:
        from otel_dd_bridge.encoding._fastpack import encode_v04 as _compiled
    except ImportError:  # pragma: no cover - depends on the install
        _compiled = None

_U64 = (1 << 64) - 1
_U32 = (1 << 32) - 1


def _link(link: DDSpanLink) -> dict[str, Any]:
    out: dict[str, Any] = {"trace_id": int(link.trace_id) & _U64}
    if link.trace_id_high:
        out["trace_id_high"] = int(link.trace_id_high) & _U64
    out["span_id"] = int(link.span_id) & _U64
    if link.attributes:
        out["attributes"] = {str(k): str(v) for k, v in link.attributes.items()}
    if link.tracestate:
        out["tracestate"] = str(link.tracestate)
    if link.flags is not None:
        out["flags"] = int(link.flags) & _U32  # unsigned: bit 31 set must not go negative
    return out


def _scalar(v: Any) -> dict[str, Any]:
    t = type(v)
    if t is str:
        return {"type": 0, "string_value": v}
    if t is bool:
        return {"type": 1, "bool_value": v}
    if t is int and -(1 << 63) <= v < (1 << 63):
        return {"type": 2, "int_value": v}
    if t is float:
        return {"type": 3, "double_value": v}
    return {"type": 0, "string_value": str(v)}


def _any_value(v: Any) -> dict[str, Any]:
    if isinstance(v, (list, tuple)):
        return {"type": 4, "array_value": {"values": [_scalar(x) for x in v]}}
    if isinstance(v, float) or (isinstance(v, int) and not isinstance(v, bool)):
        return _scalar(float(v) if isinstance(v, float) else int(v))
    return _scalar(v)


def _event(ev: DDSpanEvent) -> dict[str, Any]:
    out: dict[str, Any] = {"name": str(ev.name), "time_unix_nano": max(0, int(ev.time_unix_nano))}
    if ev.attributes:
        out["attributes"] = {str(k): _any_value(v) for k, v in ev.attributes.items()}
    return out


def _span_with_newer_keys(s: DDSpan) -> dict[str, Any]:
    d: dict[str, Any] = {
        "trace_id": s.trace_id, "span_id": s.span_id, "parent_id": s.parent_id,
        "service": s.service, "name": s.name, "resource": s.resource, "type": s.type,
        "start": s.start, "duration": s.duration, "error": s.error, "meta": s.meta,
        "metrics": s.metrics,
    }
    if s.meta_struct:
        d["meta_struct"] = {str(k): bytes(v) for k, v in s.meta_struct.items()}
    if s.span_links:
        d["span_links"] = [_link(x) for x in s.span_links]
    if s.span_events:
        d["span_events"] = [_event(x) for x in s.span_events]
    return d


class V04Encoder:
    """Encoder for ``/v0.4/traces``."""

    api_version = "v0.4"
    path = "/v0.4/traces"
    content_type = "application/msgpack"

    def __init__(self) -> None:
        self._packer = Packer()

    def encode(self, chunks: Sequence[TraceChunk]) -> bytes:
        """Encode chunks as one v0.4 body."""
        if _compiled is not None and _state["compiled"]:
            body = _compiled(chunks)
            if body is not None:
                return body
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
                if not (s.meta_struct or s.span_links or s.span_events)
                else _span_with_newer_keys(s)
                for s in chunk.spans
            ]
            for chunk in chunks
        ]
        data: bytes = self._packer.pack(payload)
        return data
