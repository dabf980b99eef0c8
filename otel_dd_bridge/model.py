"""The Datadog span model: the contract between translation and encoding.

Translation (:mod:`otel_dd_bridge.translate`) produces these objects; the encoders
(:mod:`otel_dd_bridge.encoding`) consume them. Neither side knows the other, and nothing here
imports OpenTelemetry.

Field meanings follow the Agent's v0.4 span (``pkg/proto/datadog/trace/span.proto``):

* ids are unsigned 64-bit integers; ``trace_id`` holds the **low** 64 bits of a 128-bit
  trace id, the upper half travels as meta ``_dd.p.tid`` on the first span of each chunk;
* ``start`` is nanoseconds since the Unix epoch and ``duration`` nanoseconds;
* ``error`` is 0 or 1;
* ``meta`` maps str to str, ``metrics`` maps str to a number (int or float; the Agent reads
  float64).

The classes are plain slotted classes (not frozen): building one per span is on the hot
path and a frozen dataclass ``__init__`` costs several times more. ``DDSpan`` is written out
by hand (its ``meta`` is a property over the span's own entries plus a shared tail, see the
class); the others are slotted dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

try:  # mypyc reads it at build time (mypy_extensions ships with mypy); optional at run time
    from mypy_extensions import mypyc_attr
except ImportError:  # pragma: no cover - depends on the install

    def mypyc_attr(*attrs: str, **kwattrs: object) -> Any:  # type: ignore[misc]
        return lambda cls: cls


__all__ = ["DDSpan", "DDSpanEvent", "DDSpanLink", "PayloadInfo", "TraceChunk"]


@dataclass(slots=True, eq=True)
class DDSpanLink:
    """A native span link (v0.4 ``span_links`` element; proto ``SpanLink``).

    ``trace_id`` holds the low 64 bits, ``trace_id_high`` the upper 64 (0 when none);
    ``flags`` is the W3C trace-flags word as the tracer sends it (bit 31 set = "flags known"),
    ``None`` when unknown. Empty ``attributes``/``tracestate`` are omitted on the wire.
    """

    trace_id: int
    span_id: int
    trace_id_high: int = 0
    attributes: dict[str, str] = field(default_factory=dict)
    tracestate: str = ""
    flags: int | None = None


@dataclass(slots=True, eq=True)
class DDSpanEvent:
    """A native span event (v0.4 ``span_events`` element).

    ``attributes`` values are str, bool, int, float or a list/tuple of those; the encoder writes
    them typed (``{"type": 0..4, "<kind>_value": ...}``), floats always as msgpack floats.
    """

    name: str
    time_unix_nano: int
    attributes: dict[str, Any] = field(default_factory=dict)


# DDSpan's constructor arguments, in order (also what _fields() returns).
_SPAN_FIELDS: Final = ("trace_id", "span_id", "parent_id", "service", "name", "resource", "type",
                       "start", "duration", "error", "meta", "metrics", "meta_struct",
                       "span_links", "span_events")


# allow_interpreted_subclasses: compiled or not, DDSpan and TraceChunk can be subclassed.
@mypyc_attr(allow_interpreted_subclasses=True)
class DDSpan:
    """One Datadog span, already normalized and truncated as the Agent would.

    ``meta`` is a plain dict, read and written as usual. Internally the translation may leave
    the entries every span of one (resource, scope, status) shares -- resource attributes,
    scope, ``otel.status_code``, ``env`` -- in one shared, read-only dict (``_tail``) instead
    of copying them into each span: the compiled encoders write ``_meta`` then ``_tail``
    (their keys are disjoint by construction) without building the merged dict, and reading
    ``meta`` merges the tail in place first, so every other reader sees the whole dict.
    ``meta_get``/``meta_set``/``meta_setdefault`` act on the merged view without merging.
    The order of meta entries carries no meaning (the Agent keeps them in a Go map).

    A span is not meant to be mutated from two threads at once (the exporter hands each batch
    from one stage to the next).
    """

    __slots__ = ("trace_id", "span_id", "parent_id", "service", "name", "resource", "type",
                 "start", "duration", "error", "_meta", "_tail", "metrics", "meta_struct",
                 "span_links", "span_events")

    trace_id: int
    span_id: int
    parent_id: int
    service: str
    name: str
    resource: str
    type: str
    start: int
    duration: int
    error: int
    _meta: dict[str, str]
    # Shared meta entries not in _meta (never mutated; None when merged or none).
    _tail: dict[str, str] | None
    metrics: dict[str, float | int]
    # The Agent's newer v0.4 keys. ``None`` or empty means "not sent": the Go Agent rejects a
    # nil or empty value for the whole request, so encoders omit them (wire.md §1.2). The
    # translation keeps events/links as JSON in meta and leaves these unset.
    meta_struct: dict[str, bytes] | None  # each value a msgpack document, sent as bin
    span_links: list[DDSpanLink] | None
    span_events: list[DDSpanEvent] | None

    # One per span on the hot path: mypyc compiles this to C.
    def __init__(
        self, trace_id: int, span_id: int, parent_id: int, service: str, name: str,
        resource: str, type: str, start: int, duration: int, error: int,  # noqa: A002
        meta: dict[str, str], metrics: dict[str, float | int],
        meta_struct: dict[str, bytes] | None = None,
        span_links: list[DDSpanLink] | None = None,
        span_events: list[DDSpanEvent] | None = None,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.service = service
        self.name = name
        self.resource = resource
        self.type = type
        self.start = start
        self.duration = duration
        self.error = error
        self._meta = meta
        self._tail = None
        self.metrics = metrics
        self.meta_struct = meta_struct
        self.span_links = span_links
        self.span_events = span_events

    def _get_meta(self) -> dict[str, str]:
        tail = self._tail
        if tail is not None:
            self._tail = None
            self._meta.update(tail)
        return self._meta

    def _set_meta(self, value: dict[str, str]) -> None:
        self._meta = value
        self._tail = None

    @property
    def meta(self) -> dict[str, str]:
        """All meta entries (the shared tail is merged into the span's own dict first)."""
        return self._get_meta()

    @meta.setter
    def meta(self, value: dict[str, str]) -> None:
        self._set_meta(value)

    def meta_get(self, key: str, default: str | None = None) -> str | None:
        """``meta.get(key, default)``, without merging the tail."""
        v = self._meta.get(key)
        if v is not None:
            return v
        tail = self._tail
        if tail is not None:
            return tail.get(key, default)
        return default

    def meta_set(self, key: str, value: str) -> None:
        """``meta[key] = value``; merges the tail first only when it holds ``key``."""
        tail = self._tail
        if tail is not None and key in tail:
            self._get_meta()  # merge
        self._meta[key] = value

    def meta_setdefault(self, key: str, value: str) -> str:
        """``meta.setdefault(key, value)``, without merging the tail."""
        own = self._meta
        if key in own:
            return own[key]
        tail = self._tail
        if tail is not None and key in tail:
            return tail[key]
        own[key] = value
        return value

    def _merged(self) -> dict[str, str]:
        """All meta entries, without merging: the own dict, or a new one with the tail."""
        tail = self._tail
        if tail is None:
            return self._meta
        return {**self._meta, **tail}

    def _fields(self) -> tuple[Any, ...]:
        return (
            self.trace_id, self.span_id, self.parent_id, self.service, self.name, self.resource,
            self.type, self.start, self.duration, self.error, self._merged(), self.metrics,
            self.meta_struct, self.span_links, self.span_events,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DDSpan):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        body = ", ".join(f"{n}={v!r}" for n, v in zip(_SPAN_FIELDS, self._fields(), strict=True))
        return f"{type(self).__name__}({body})"

    def __reduce__(self) -> tuple[Any, ...]:
        # copy/pickle by the constructor (a compiled class cannot be made empty, then filled);
        # a copy holds all its meta entries itself.
        return (type(self), self._fields())


# A mypyc property setter does not refuse ``del span.meta`` (it would store NULL and crash on
# the next read): interpreted code reaches ``meta`` through a plain property, which refuses it.
# Compiled callers keep calling the native accessors directly.
setattr(DDSpan, "meta", property(DDSpan._get_meta, DDSpan._set_meta, None,  # noqa: B010
                                 "All meta entries (the shared tail merged in first)."))


@dataclass(slots=True, eq=True)
class PayloadInfo:
    """What the Agent keeps per payload (``TracerPayload``), derived once per OTel resource.

    v0.4/v0.5 requests carry none of it in the body (the Agent fills it from headers and the
    root span); the agentless protobuf intake needs it explicitly.
    """

    hostname: str = ""
    env: str = ""
    app_version: str = ""
    container_id: str = ""
    language_name: str = "python"
    language_version: str = ""
    tracer_version: str = ""
    runtime_id: str = ""
    tags: dict[str, str] = field(default_factory=dict)  # container tags (`_dd.tags.container`)


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(slots=True, eq=True, init=False)
class TraceChunk:
    """The spans of one trace (same low-64-bit trace id) from one OTel resource in one batch.

    Attributes:
        spans: the spans; the first one carries the chunk-level meta/metrics
            (``_sampling_priority_v1``, ``_dd.p.dm``, ``_dd.p.tid``).
        priority: the sampling priority (-1, 0, 1, 2), or ``None`` when undecided.
        origin: ``_dd.origin`` of the trace, ``""`` when none.
        tags: chunk-level tags (``TraceChunk.tags`` in the intake protobuf), e.g. ``_dd.p.dm``.
        dropped_trace: the chunk was sampled out upstream (kept only for stats).
        payload: per-resource payload information, shared by all chunks of one resource.
    """

    spans: list[DDSpan]
    priority: int | None
    origin: str
    tags: dict[str, str]
    dropped_trace: bool
    payload: PayloadInfo | None

    def __init__(
        self, spans: list[DDSpan], priority: int | None = None, origin: str = "",
        tags: dict[str, str] | None = None, dropped_trace: bool = False,
        payload: PayloadInfo | None = None,
    ) -> None:
        self.spans = spans
        self.priority = priority
        self.origin = origin
        self.tags = {} if tags is None else tags
        self.dropped_trace = dropped_trace
        self.payload = payload

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.spans, self.priority, self.origin, self.tags,
                             self.dropped_trace, self.payload))
