"""``DatadogPropagator``: Datadog's ``x-datadog-*`` HTTP headers for OpenTelemetry.

Usable as ``OTEL_PROPAGATORS=tracecontext,datadog`` (entry point ``opentelemetry_propagator``
``datadog``) or ``set_global_textmap(CompositePropagator([...]))``. Headers (wire.md §6.1):

* ``x-datadog-trace-id``: decimal low 64 bits (1..2^64-1 on extract);
* ``x-datadog-parent-id``: decimal span id;
* ``x-datadog-sampling-priority``: -1, 0, 1 or 2;
* ``x-datadog-origin``;
* ``x-datadog-tags``: ``_dd.p.*`` pairs ``k=v`` joined by ``,``, at most 512 characters (a
  longer header is ignored on extract and not injected); the upper 64 bits of a 128-bit trace id
  travel as ``_dd.p.tid`` (16 lowercase hex characters, non-zero, else ignored).

What was extracted (priority, origin, ``_dd.p.*`` tags, the Datadog parent id) is kept in the
span context's W3C ``tracestate`` ``dd=`` member (see :mod:`._ddstate`), which the SDK copies to
every child span; translation reads it back, so the exported spans carry
``_sampling_priority_v1``, ``_dd.origin`` and ``_dd.p.dm`` from upstream. Malformed headers never
raise: nothing is extracted and the incoming context is returned unchanged.

Choice: an extracted context without a sampling priority is marked sampled (the local sampler
then keeps it, priority 1), as Datadog tracers treat an undecided upstream as "decide here".
"""

from __future__ import annotations

import logging
import re
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from otel_dd_bridge._ddstate import DDState, format_dd_member, parse_dd_member

logger = logging.getLogger(__name__)

__all__ = ["DatadogPropagator", "RemoteDatadogContext"]

TRACE_ID = "x-datadog-trace-id"
PARENT_ID = "x-datadog-parent-id"
PRIORITY = "x-datadog-sampling-priority"
ORIGIN = "x-datadog-origin"
TAGS = "x-datadog-tags"
MAX_TAGS_LEN = 512
_U64 = (1 << 64) - 1
_TID = re.compile(r"[0-9a-f]{16}")
_TAG_KEY = re.compile(r"[!-+\--<>-~]+")  # printable ASCII without space, ',' and '='
_TAG_VALUE = re.compile(r"[ -+\--~]*")  # printable ASCII without ','


def _first(getter: Getter[CarrierT], carrier: CarrierT, key: str) -> str | None:
    values = getter.get(carrier, key)
    if not values:
        return None
    return values[0].strip()


class RemoteDatadogContext(SpanContext):
    """The extracted parent context, carrying ``_dd.propagation_error`` when extraction had to
    drop something. Translation copies it to the meta of the spans whose parent it is (the local
    root), as Datadog's tracers tag their local root span."""

    propagation_error: str | None

    def __new__(cls, *args: object, propagation_error: str | None = None, **kw: object) -> Any:
        self = super().__new__(cls, *args, **kw)  # type: ignore[arg-type]
        object.__setattr__(self, "propagation_error", propagation_error)
        return self


def _parse_tags(header: str | None) -> tuple[dict[str, str], str | None]:
    """The ``_dd.p.*`` tags of ``x-datadog-tags`` and the propagation error, if any."""
    if not header:
        return {}, None
    if len(header) > MAX_TAGS_LEN:
        logger.debug("x-datadog-tags longer than %d characters ignored", MAX_TAGS_LEN)
        return {}, "extract_max_size"
    tags: dict[str, str] = {}
    for item in header.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not _TAG_KEY.fullmatch(key) or not _TAG_VALUE.fullmatch(value):
            logger.debug("malformed x-datadog-tags ignored")
            return {}, "decoding_error"
        if key.startswith("_dd.p.") and key != "_dd.p.upstream_services":
            tags[key] = value
    return tags, None


class DatadogPropagator(TextMapPropagator):
    """Inject and extract Datadog's ``x-datadog-*`` trace headers."""

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        ctx = Context() if context is None else context
        try:
            return self._extract(carrier, ctx, getter)
        except Exception:  # noqa: BLE001 - a bad header must never break a request
            logger.debug("could not extract Datadog headers", exc_info=True)
            return ctx

    def _extract(self, carrier: CarrierT, ctx: Context, getter: Getter[CarrierT]) -> Context:
        raw_trace = _first(getter, carrier, TRACE_ID)
        raw_parent = _first(getter, carrier, PARENT_ID)
        if not raw_trace or not raw_parent or not raw_trace.isdigit() or not raw_parent.isdigit():
            return ctx
        low, parent = int(raw_trace), int(raw_parent)
        if not (0 < low <= _U64) or not (0 < parent <= _U64):
            return ctx
        raw_prio = _first(getter, carrier, PRIORITY)
        priority: int | None = None
        if raw_prio and re.fullmatch(r"-?\d+", raw_prio):
            priority = int(raw_prio)
        origin = _first(getter, carrier, ORIGIN) or ""
        tags, error = _parse_tags(_first(getter, carrier, TAGS))
        high = 0
        tid = tags.pop("_dd.p.tid", None)
        if tid is not None:
            if _TID.fullmatch(tid) and tid != "0" * 16:
                high = int(tid, 16)
            else:
                error = f"malformed_tid {tid}"
        state = DDState(priority=priority, origin=origin, parent_id=f"{parent:016x}", tags=tags)
        sampled = priority is None or priority > 0
        span_ctx = RemoteDatadogContext(
            trace_id=(high << 64) | low,
            span_id=parent,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
            trace_state=TraceState([("dd", format_dd_member(state))]),
            propagation_error=error,
        )
        return trace.set_span_in_context(NonRecordingSpan(span_ctx), ctx)

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        try:
            self._inject(carrier, context, setter)
        except Exception:  # noqa: BLE001
            logger.debug("could not inject Datadog headers", exc_info=True)

    def _inject(self, carrier: CarrierT, context: Context | None, setter: Setter[CarrierT]) -> None:
        span = trace.get_current_span(context)
        span_ctx = span.get_span_context()
        if not span_ctx.is_valid:
            return
        dd_value = span_ctx.trace_state.get("dd") if span_ctx.trace_state else None
        state = parse_dd_member(dd_value) if dd_value else DDState()
        if not span_ctx.trace_flags.sampled:
            priority = state.priority if state.priority is not None and state.priority <= 0 else 0
        elif state.priority is not None and state.priority > 0:
            priority = state.priority
        else:
            priority = 1
        setter.set(carrier, TRACE_ID, str(span_ctx.trace_id & _U64))
        setter.set(carrier, PARENT_ID, str(span_ctx.span_id))
        setter.set(carrier, PRIORITY, str(priority))
        if state.origin:
            setter.set(carrier, ORIGIN, state.origin)
        tags = {k: v for k, v in state.tags.items() if k.startswith("_dd.p.")}
        high = span_ctx.trace_id >> 64
        if high:
            tags["_dd.p.tid"] = f"{high:016x}"
        if tags:
            header = ",".join(f"{k}={v}" for k, v in tags.items())
            if len(header) <= MAX_TAGS_LEN:
                setter.set(carrier, TAGS, header)
            else:
                logger.debug("x-datadog-tags over %d characters not injected", MAX_TAGS_LEN)
                if span.is_recording():
                    span.set_attribute("_dd.propagation_error", "inject_max_size")

    @property
    def fields(self) -> set[str]:
        return {TRACE_ID, PARENT_ID, PRIORITY, ORIGIN, TAGS}
