"""Helpers that build real OTel SDK ReadableSpans for tests."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

TRACE_ID = 0x72DF520AF2BDE7A5240031EAD750E5F3
SPAN_ID = 0x240031EAD750E5F3
START = 1_700_000_000_000_000_000


def make_span(
    name: str = "span",
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: dict[str, Any] | None = None,
    resource: dict[str, Any] | Resource | None = None,
    trace_id: int = TRACE_ID,
    span_id: int = SPAN_ID,
    parent_id: int | None = None,
    parent_remote: bool = False,
    status: Status | None = None,
    events: list[Event] | None = None,
    links: list[Link] | None = None,
    scope: tuple[str, str] | None = ("ddtracer", "v2"),
    trace_state: str | None = None,
    duration: int = 200_000_000,
) -> ReadableSpan:
    ts = TraceState.from_header([trace_state]) if trace_state else None
    ctx = SpanContext(trace_id, span_id, False, TraceFlags(1), ts)
    parent = (
        SpanContext(trace_id, parent_id, parent_remote, TraceFlags(1)) if parent_id else None
    )
    res = resource if isinstance(resource, Resource) else Resource(resource or {})
    return ReadableSpan(
        name=name,
        context=ctx,
        parent=parent,
        resource=res,
        attributes=attributes or {},
        events=events or (),
        links=links or (),
        kind=kind,
        status=status or Status(StatusCode.UNSET),
        start_time=START,
        end_time=START + duration,
        instrumentation_scope=InstrumentationScope(*scope) if scope else None,
    )
