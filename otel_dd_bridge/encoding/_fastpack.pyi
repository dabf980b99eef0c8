"""Types of the compiled encoder (``_fastpack.pyx``); ``None`` means: use the pure encoder."""

from collections.abc import Sequence

from otel_dd_bridge.model import TraceChunk

def encode_v04(chunks: Sequence[TraceChunk]) -> bytes | None: ...
def encode_v05(chunks: Sequence[TraceChunk]) -> bytes | None: ...
