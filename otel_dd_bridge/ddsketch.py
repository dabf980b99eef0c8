"""DDSketch for APM latency distributions, binned the way Datadog reads them.

Contract (wire.md §4.3, libdatadog ``libdd-ddsketch``, sketches-go ``LogarithmicMapping``):

* mapping: relative accuracy α = 1/129, so γ = (1 + α)/(1 − α) = **1.015625** exactly, and
  ``indexOffset = 1338.5`` (= 1 − ⌊ln 1e-9 / ln γ⌋ + 0.5, the offset of Datadog's backend);
  a value v > 0 goes to bin ``i = ⌊ln v / ln γ + indexOffset⌋``; Datadog reads bin i back as
  ``γ^(i − indexOffset) · (1 + α)``, within ±α of every value in the bin. (The Python
  ``ddsketch`` package keys ``⌈log_γ v⌉`` and reads one bin high in Datadog: not used here.)
* values below :data:`MIN_INDEXABLE` (in practice only 0: values are nanoseconds) count in
  ``zeroCount``; negative, NaN and infinite values are rejected (:meth:`DDSketch.add` returns
  False), as in libdatadog.
* store: a low-collapsing dense store of at most :data:`MAX_BINS` (2048) contiguous bins. When
  a new value would stretch the range past 2048 bins, the lowest bins are merged into the lowest
  kept one (a new value below the range lands in the lowest bin): the high percentiles, the
  ones a latency page shows, keep their accuracy.
* serialization: the ``DDSketch`` protobuf message (``mapping`` = {gamma, indexOffset,
  interpolation NONE}, ``positiveValues`` = contiguous bin counts + their first index,
  an empty ``negativeValues``, ``zeroCount``), hand-encoded here (stdlib only), byte-compatible
  with what libdatadog's prost encoder emits for the same sketch.

Bins live in a dict keyed by index (cheap to update from Python); the dense protobuf array is
built at flush time only. Not thread-safe: the concentrator serializes access.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable

__all__ = [
    "GAMMA",
    "INDEX_OFFSET",
    "MAX_BINS",
    "MIN_INDEXABLE",
    "RELATIVE_ACCURACY",
    "DDSketch",
    "bin_index",
    "bin_value",
    "encode_empty",
]

RELATIVE_ACCURACY = 1.0 / 129.0
GAMMA = 1.015625  # == (1 + 1/129) / (1 - 1/129), exactly representable
INDEX_OFFSET = 1338.5
MAX_BINS = 2048
_MULTIPLIER = 1.0 / math.log(GAMMA)
# The smallest value whose bin is representable (libdatadog's min_indexable_value): a value
# below it would read back as a subnormal, or its index would not fit a sint32.
MIN_INDEXABLE = max(
    2.2250738585072014e-308 * GAMMA,
    math.exp((-(2**31) - INDEX_OFFSET) / _MULTIPLIER + 1.0),
)

_log = math.log
_floor = math.floor
_pack_d = struct.Struct("<d").pack


def bin_index(value: float) -> int:
    """The bin of a value ≥ :data:`MIN_INDEXABLE` (Datadog's convention: floor)."""
    return _floor(_log(value) * _MULTIPLIER + INDEX_OFFSET)


def bin_value(index: int) -> float:
    """The value Datadog reads for a bin: ``γ^(index − indexOffset) · (1 + α)``."""
    return math.exp((index - INDEX_OFFSET) / _MULTIPLIER) * (1.0 + RELATIVE_ACCURACY)


class DDSketch:
    """A mergeable quantile sketch of non-negative values (span durations in ns)."""

    __slots__ = ("_bins", "_hi", "_lo", "count", "zero_count")

    def __init__(self) -> None:
        self._bins: dict[int, float] = {}  # counts (int when only add_ns fed them)
        self._lo = 0  # lowest bin index of the stored range (valid when _bins is not empty)
        self._hi = -1  # highest bin index
        self.count = 0.0
        self.zero_count = 0.0

    def add(self, value: float, weight: float = 1.0) -> bool:
        """Add ``value`` with ``weight``; False (nothing added) when the value is negative or
        not finite, or the weight is not finite."""
        if not (value >= 0.0) or value == math.inf or not math.isfinite(weight):
            return False
        self.count += weight
        if value < MIN_INDEXABLE:
            self.zero_count += weight
            return True
        k = _floor(_log(value) * _MULTIPLIER + INDEX_OFFSET)
        bins = self._bins
        if not bins:
            self._lo = self._hi = k
            bins[k] = weight
            return True
        if k < self._lo:
            floor_k = self._hi - MAX_BINS + 1
            if k < floor_k:  # the range is full downwards: collapse into the lowest bin
                k = floor_k
            if k < self._lo:
                self._lo = k
        elif k > self._hi:
            new_lo = k - MAX_BINS + 1
            if new_lo > self._lo:
                self._collapse_below(new_lo)
            self._hi = k
        bins[k] = bins.get(k, 0.0) + weight
        return True

    def add_ns(self, duration: int) -> None:
        """:meth:`add` for a span duration: an ``int`` >= 0 (the caller guarantees it). The hot
        path of the stats concentrator: a value inside the current bin range costs one log and
        one dict update."""
        self.count += 1.0
        if duration < 1:  # 0 ns; MIN_INDEXABLE < 1
            self.zero_count += 1.0
            return
        k = _floor(_log(duration) * _MULTIPLIER + INDEX_OFFSET)
        if self._lo <= k <= self._hi:
            bins = self._bins
            bins[k] = bins.get(k, 0) + 1  # int counts: CPython shares small ints (memory)
            return
        self.count -= 1.0
        self._add_bin(k, 1)

    def _collapse_below(self, new_lo: int) -> None:
        bins = self._bins
        moved: float = 0
        for key in [key for key in bins if key < new_lo]:
            moved += bins.pop(key)
        if moved:
            bins[new_lo] = bins.get(new_lo, 0.0) + moved
        self._lo = new_lo

    def merge(self, other: DDSketch) -> None:
        """Add every bin of ``other`` (same mapping) into this sketch."""
        self.zero_count += other.zero_count
        self.count += other.zero_count
        for k in sorted(other._bins):
            self._add_bin(k, other._bins[k])

    def _add_bin(self, k: int, weight: float) -> None:  # weight may be an int
        # ``add`` for a known bin index (used by merge): same range and collapse rules
        self.count += weight
        bins = self._bins
        if not bins:
            self._lo = self._hi = k
            bins[k] = weight
            return
        if k < self._lo:
            k = max(k, self._hi - MAX_BINS + 1)
            self._lo = min(self._lo, k)
        elif k > self._hi:
            new_lo = k - MAX_BINS + 1
            if new_lo > self._lo:
                self._collapse_below(new_lo)
            self._hi = k
        bins[k] = bins.get(k, 0) + weight

    @property
    def num_bins(self) -> int:
        """Width of the stored dense range (what the protobuf carries), ≤ :data:`MAX_BINS`."""
        return self._hi - self._lo + 1 if self._bins else 0

    def bins(self) -> list[tuple[int, float]]:
        """Non-empty ``(index, count)`` pairs in increasing index order."""
        return sorted((k, c) for k, c in self._bins.items() if c)

    def quantile(self, q: float) -> float | None:
        """The q-quantile as Datadog computes it (rank q·(n−1), first bin whose cumulative
        count exceeds it, read back with :func:`bin_value`); None when empty."""
        if self.count <= 0 or not 0.0 <= q <= 1.0:
            return None
        rank = q * (self.count - 1)
        if rank < self.zero_count:
            return 0.0
        cum = self.zero_count
        last = None
        for k, c in self.bins():
            cum += c
            last = k
            if cum > rank:
                return bin_value(k)
        return bin_value(last) if last is not None else 0.0

    def to_proto(self) -> bytes:
        """The serialized ``DDSketch`` protobuf message (see the module docstring)."""
        out = bytearray(_MAPPING_FIELD)
        if self._bins:
            lo, hi = self._lo, self._hi
            get = self._bins.get
            counts = b"".join(_pack_d(get(k, 0.0)) for k in range(lo, hi + 1))
            store = bytearray(b"\x12")  # field 2 contiguousBinCounts, packed doubles
            store += _varint(len(counts))
            store += counts
            if lo:
                store += b"\x18"  # field 3 contiguousBinIndexOffset, sint32 (zigzag)
                store += _varint(_zigzag32(lo))
            out += b"\x12"  # field 2 positiveValues
            out += _varint(len(store))
            out += store
        out += b"\x1a\x00"  # field 3 negativeValues: empty, as libdatadog sends it
        if self.zero_count:
            out += b"\x21"  # field 4 zeroCount, double
            out += _pack_d(self.zero_count)
        return bytes(out)

    @classmethod
    def of(cls, values: Iterable[float]) -> DDSketch:
        """A sketch of ``values`` (convenience for tests and tools)."""
        s = cls()
        for v in values:
            s.add(v)
        return s


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _zigzag32(n: int) -> int:
    return ((n << 1) ^ (n >> 31)) & 0xFFFFFFFF


def _mapping_field() -> bytes:
    # IndexMapping{1: gamma double, 2: indexOffset double}; interpolation NONE (0) is the
    # proto3 default and, as prost does, not written.
    mapping = b"\x09" + _pack_d(GAMMA) + b"\x11" + _pack_d(INDEX_OFFSET)
    return b"\x0a" + _varint(len(mapping)) + mapping


_MAPPING_FIELD = _mapping_field()
_EMPTY = DDSketch().to_proto()


def encode_empty() -> bytes:
    """The serialized empty sketch (for a group with no ok or no error span)."""
    return _EMPTY
