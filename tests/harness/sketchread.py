"""Reading DDSketch protobufs back the way Datadog does (sketches-go ``LogarithmicMapping`` and
libdatadog): bin i stands for ``gamma ** (i - indexOffset) * (1 + alpha)``, alpha =
(gamma - 1) / (gamma + 1); the quantile q is the value of the first bin whose cumulative count
exceeds ``q * (n - 1)``. Parsed with the ``ddsketch`` package's protobuf classes, independent of
our encoder."""

from __future__ import annotations

from ddsketch.pb.ddsketch_pb2 import DDSketch as SketchProto

__all__ = ["SketchProto", "decode", "go_quantile"]


def decode(raw: bytes) -> SketchProto:
    msg = SketchProto()
    msg.ParseFromString(raw)
    return msg


def go_quantile(sketch: bytes | SketchProto, q: float) -> float:
    """The q-quantile Datadog reads from a serialized (or parsed) sketch."""
    msg = decode(sketch) if isinstance(sketch, bytes) else sketch
    gamma, offset = msg.mapping.gamma, msg.mapping.indexOffset
    alpha = (gamma - 1) / (gamma + 1)
    counts = list(msg.positiveValues.contiguousBinCounts)
    first = msg.positiveValues.contiguousBinIndexOffset
    assert not msg.positiveValues.binCounts  # we only send the dense form
    rank = q * (msg.zeroCount + sum(counts) - 1)
    if rank < msg.zeroCount:
        return 0.0
    cum = msg.zeroCount
    for i, c in enumerate(counts):
        cum += c
        if cum > rank:
            return float(gamma ** (first + i - offset) * (1 + alpha))
    raise AssertionError("rank beyond the sketch")
