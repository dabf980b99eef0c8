"""Datadog trace intake: ``POST /api/v0.2/traces``, ``Content-Type: application/x-protobuf``.

The body is one protobuf ``AgentPayload`` (``otel_dd_bridge/proto/agent_payload.proto``, written
from wire.md §3.3), exactly what a Datadog Agent forwards after its own processing; the caller
gzips it (:mod:`otel_dd_bridge.intake`)::

    AgentPayload
      1 hostName        ""  (the local machine's name is never reported: translation D4)
      2 env             the configured env, else "none" (the Agent's DefaultEnv)
      5 tracerPayloads  one per OTel resource (one PayloadInfo), in first-seen order
      7 agentVersion    "otel-dd-bridge/<version>"
      8 targetTPS 10, 9 errorTPS 10   (the Agent's defaults; informational for the backend)
      (3, 4, 11, 12 never written; 12 does not exist any more)
    TracerPayload
      1 containerID, 2 languageName ("python" unless the resource says otherwise),
      3 languageVersion (this interpreter unless given), 4 tracerVersion, 5 runtimeID,
      6 chunks, 7 tags (``_dd.tags.container`` = "k:v,..." from the resource, sorted),
      8 env, 9 hostname, 10 appVersion -- env/hostname/appVersion fall back, like the Agent's
      ``setPayloadAttributes``, to the root span's meta ``env`` / ``_dd.hostname`` /
      ``version`` (then any span's ``env``/``version``) of the first chunk that has one.
      11 containerDebug: never set (Datadog fills it).
    TraceChunk
      1 priority  TraceChunk.priority, else the root's, else any span's
                  ``_sampling_priority_v1``, else -128 (the Agent's PriorityNone)
      2 origin    TraceChunk.origin, else the root's meta ``_dd.origin``
      3 spans, 4 tags (TraceChunk.tags; ``_dd.p.dm`` from the first span carrying it when
                  missing, as the Agent's ``setChunkAttributes``), 5 droppedTrace
    Span
      1-12 as v0.4 (uint64 ids, the low half of 128-bit trace ids; int64 ns times; meta str->str;
      metrics str->double, ints converted), 13 meta_struct (bytes), 14 spanLinks, 15 spanEvents.

Span links and events: translation stores OTel events and links as JSON in meta ``events`` and
``_dd.span_links``, which is what the Agent's OTLP ingest does and so what an Agent forwards;
they stay there. A model span with native ``meta_struct`` / ``span_links`` / ``span_events``
(:class:`~otel_dd_bridge.model.DDSpanLink`, :class:`~otel_dd_bridge.model.DDSpanEvent`) gets
them in protobuf fields 13-15 (link ``flags`` ``None`` -> 0, i.e. unset; event attributes typed
as ``AttributeAnyValue``, lists as ``ARRAY_VALUE``).

"Root" is the Agent's ``traceutil.GetRoot``: the last span with parent 0, else a span whose
parent is not in the chunk, else the last span.

Encoding uses the generated classes (upb). The encoder is pure: no I/O, no env reads, and it
never mutates the chunks.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Sequence
from typing import Any

from otel_dd_bridge import _lifecycle
from otel_dd_bridge.model import DDSpan, PayloadInfo, TraceChunk
from otel_dd_bridge.proto import agent_payload_pb2 as pb
from otel_dd_bridge.version import __version__

__all__ = ["PRIORITY_NONE", "IntakeEncoder", "chunk_priority", "chunk_root"]

PRIORITY_NONE = -128  # the Agent's sampler.PriorityNone; libdatadog uses i8::MIN too
_DEFAULT_PAYLOAD = PayloadInfo()
_AV = pb.AttributeAnyValue
_AAV = pb.AttributeArrayValue


def chunk_root(spans: Sequence[DDSpan]) -> DDSpan:
    """The Agent's ``traceutil.GetRoot`` on a non-empty chunk."""
    for s in reversed(spans):
        if s.parent_id == 0:
            return s
    ids = {s.span_id for s in spans}
    for s in reversed(spans):
        if s.parent_id not in ids:
            return s
    return spans[-1]


def chunk_priority(chunk: TraceChunk, root: DDSpan | None = None) -> int:
    """The chunk's sampling priority as the Agent lifts it, or :data:`PRIORITY_NONE`."""
    if chunk.priority is not None:
        return int(chunk.priority)
    if not chunk.spans:
        return PRIORITY_NONE
    root = root if root is not None else chunk_root(chunk.spans)
    p = root.metrics.get("_sampling_priority_v1")
    if p is None:
        for s in chunk.spans:
            p = s.metrics.get("_sampling_priority_v1")
            if p is not None:
                break
    if p is None or p != p:  # absent or NaN
        return PRIORITY_NONE
    return int(p)


def _any_value(v: Any, allow_array: bool = True) -> Any:
    cls: Any = _AV if allow_array else _AAV
    if isinstance(v, bool):
        return cls(type=cls.BOOL_VALUE, bool_value=v)
    if isinstance(v, int):
        return cls(type=cls.INT_VALUE, int_value=v)
    if isinstance(v, float):
        return cls(type=cls.DOUBLE_VALUE, double_value=v)
    if allow_array and isinstance(v, (list, tuple)):
        return _AV(
            type=_AV.ARRAY_VALUE,
            array_value=pb.AttributeArray(values=[_any_value(x, False) for x in v]),
        )
    return cls(type=cls.STRING_VALUE, string_value=v if isinstance(v, str) else str(v))


def _fill_native(out: Any, s: DDSpan) -> None:
    """Fields 13-15, for model spans that carry them (see the module docstring)."""
    if s.meta_struct:
        out.meta_struct.update(s.meta_struct)
    for link in s.span_links or ():
        out.spanLinks.add(
            traceID=link.trace_id, traceID_high=link.trace_id_high, spanID=link.span_id,
            attributes=link.attributes, tracestate=link.tracestate,
            flags=(link.flags or 0) & 0xFFFFFFFF,
        )
    for ev in s.span_events or ():
        e = out.spanEvents.add(time_unix_nano=ev.time_unix_nano, name=ev.name)
        for k, v in ev.attributes.items():
            e.attributes[k].CopyFrom(_any_value(v))


def _meta_of(spans: Sequence[DDSpan], root: DDSpan, key: str) -> str:
    """``traceutil.GetEnv``-style lookup: the root's meta first, then any span's."""
    v = root.meta.get(key)
    if v:
        return v
    for s in spans:
        v = s.meta.get(key)
        if v:
            return v
    return ""


class IntakeEncoder:
    """Encoder for the intake's ``/api/v0.2/traces`` (protobuf ``AgentPayload``, uncompressed).

    Args:
        env: the sender's default env (``AgentPayload.env``); ``"none"`` like an unconfigured
            Agent when not given.
        runtime_id: ``TracerPayload.runtimeID`` when the chunk's PayloadInfo has none.
    """

    api_version = "intake-v0.2"
    path = "/api/v0.2/traces"
    content_type = "application/x-protobuf"

    def __init__(self, *, env: str | None = None, runtime_id: str = "") -> None:
        self._env = env or "none"
        self._runtime_id = runtime_id
        self._lang_version = platform.python_version()
        # What agent mode sends as Datadog-Meta-Tracer-Version, which an Agent forwards as
        # tracerVersion (and what our stats payloads say): the bridge's version. The
        # translation's `otlp-<sdk version>` (the Agent's OTLP-ingest value) is not used here,
        # so agentless output equals what an Agent forwards for our agent-mode payloads.
        self._tracer_version = __version__
        self.agent_version = f"otel-dd-bridge/{__version__}"

    def languages(self, chunks: Iterable[TraceChunk]) -> str:
        """``X-Datadog-Reported-Languages``: the languages in these chunks joined by ``|``."""
        seen: dict[str, None] = {}
        for c in chunks:
            seen[(c.payload or _DEFAULT_PAYLOAD).language_name or "python"] = None
        return "|".join(seen) or "python"

    def encode(self, chunks: Sequence[TraceChunk]) -> bytes:
        """Encode chunks as one ``AgentPayload``."""
        payload = pb.AgentPayload(
            hostName="", env=self._env, agentVersion=self.agent_version,
            targetTPS=10.0, errorTPS=10.0,
        )
        tracers: dict[int, tuple[Any, PayloadInfo]] = {}
        for chunk in chunks:
            if not chunk.spans:
                continue
            info = chunk.payload or _DEFAULT_PAYLOAD
            entry = tracers.get(id(info))
            if entry is None:
                tp = payload.tracerPayloads.add(
                    containerID=info.container_id,
                    languageName=info.language_name or "python",
                    languageVersion=info.language_version or self._lang_version,
                    tracerVersion=self._tracer_version,
                    runtimeID=info.runtime_id or self._runtime_id or _lifecycle.runtime_id(),
                    env=info.env, hostname=info.hostname, appVersion=info.app_version,
                )
                if info.tags:
                    tp.tags["_dd.tags.container"] = ",".join(
                        f"{k}:{v}" for k, v in sorted(info.tags.items())
                    )
                entry = tracers[id(info)] = (tp, info)
            tp = entry[0]
            root = chunk_root(chunk.spans)
            if not tp.hostname:
                tp.hostname = root.meta.get("_dd.hostname", "")
            if not tp.env:
                tp.env = _meta_of(chunk.spans, root, "env")
            if not tp.appVersion:
                tp.appVersion = _meta_of(chunk.spans, root, "version")
            out = tp.chunks.add(
                priority=chunk_priority(chunk, root),
                origin=chunk.origin or root.meta.get("_dd.origin", ""),
                tags=chunk.tags,
                droppedTrace=chunk.dropped_trace,
            )
            if "_dd.p.dm" not in chunk.tags:
                for s in chunk.spans:
                    dm = s.meta.get("_dd.p.dm")
                    if dm is not None:
                        out.tags["_dd.p.dm"] = dm
                        break
            add = out.spans.add
            for s in chunk.spans:
                ps = add(
                    service=s.service, name=s.name, resource=s.resource,
                    traceID=s.trace_id, spanID=s.span_id, parentID=s.parent_id,
                    start=s.start, duration=s.duration, error=s.error,
                    meta=s.meta, metrics=s.metrics, type=s.type,
                )
                if s.meta_struct or s.span_links or s.span_events:
                    _fill_native(ps, s)
        data: bytes = payload.SerializeToString()
        return data
