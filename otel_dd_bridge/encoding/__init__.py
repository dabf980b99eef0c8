"""Wire encoders, one module per format, chosen from a registry.

Each encoder is a tiny object with ``api_version``, ``path``, ``content_type`` and
``encode(chunks) -> bytes``. Encoders consume :mod:`otel_dd_bridge.model` objects only; they
never import OpenTelemetry. Each module's docstring states its wire contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from otel_dd_bridge.encoding.msgpack_v04 import V04Encoder
from otel_dd_bridge.encoding.msgpack_v05 import V05Encoder
from otel_dd_bridge.model import TraceChunk

__all__ = ["ENCODERS", "Encoder", "V04Encoder", "V05Encoder", "get_encoder"]


class Encoder(Protocol):
    """What the exporter needs from a wire format."""

    api_version: str
    path: str
    content_type: str

    def encode(self, chunks: Sequence[TraceChunk]) -> bytes:
        """Encode the chunks as one request body."""
        ...


ENCODERS: dict[str, type[Encoder]] = {"v0.4": V04Encoder, "v0.5": V05Encoder}


def get_encoder(api_version: str) -> Encoder:
    """Return a fresh encoder for an Agent API version (``v0.4`` or ``v0.5``)."""
    try:
        return ENCODERS[api_version]()
    except KeyError:
        raise ValueError(f"unknown api_version {api_version!r}") from None
