"""A readable block per translated span, for ``OTEL_DD_BRIDGE_DEBUG=true`` / ``DD_TRACE_DEBUG``.

It renders the Datadog span exactly as it goes to the encoder (not the OTel span), so what the
log shows is what the Agent receives.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from otel_dd_bridge.model import DDSpan, TraceChunk

__all__ = ["DEBUG_LOGGER", "format_span", "log_chunks"]

DEBUG_LOGGER = logging.getLogger("otel_dd_bridge.debug")


def format_span(span: DDSpan) -> str:
    """The span as an indented block: fields, then tags one per line."""
    lines = [
        f"name {span.name}",
        f"  id {span.span_id}",
        f"  trace_id {span.trace_id}",
        f"  parent_id {span.parent_id}",
        f"  service {span.service}",
        f"  resource {span.resource}",
        f"  type {span.type}",
        f"  start {span.start}",
        f"  end {span.start + span.duration}",
        f"  duration {span.duration / 1e9:.6f}s",
        f"  error {span.error}",
        "  tags",
    ]
    lines += [f"    {k}: {v}" for k, v in sorted(span.meta.items())]
    lines += [f"    {k}: {v}" for k, v in sorted(span.metrics.items())]
    return "\n".join(lines)


def log_chunks(chunks: Sequence[TraceChunk]) -> None:
    """Log every span of the chunks at DEBUG (cheap no-op when DEBUG is off)."""
    if not DEBUG_LOGGER.isEnabledFor(logging.DEBUG):
        return
    for chunk in chunks:
        for span in chunk.spans:
            DEBUG_LOGGER.debug("%s", format_span(span))
