"""Our DDSketch, read back the way Datadog reads it.

The protobuf bytes are decoded with the ``ddsketch`` package's generated classes (an independent
decoder), then every quantile is computed with Datadog's Go/libdatadog formula: bin i stands for
``gamma ** (i - indexOffset) * (1 + alpha)``, the quantile q is the first bin whose cumulative
count exceeds ``q * (n - 1)``. The exact quantile of the data is ``sorted(values)[floor(q*(n-1))]``.
"""

from __future__ import annotations

import math
import random
import struct

import pytest
from ddsketch import DDSketch as PackageSketch
from ddsketch.pb.ddsketch_pb2 import IndexMapping
from ddsketch.pb.proto import DDSketchProto
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_dd_bridge.ddsketch import (
    GAMMA,
    INDEX_OFFSET,
    MAX_BINS,
    RELATIVE_ACCURACY,
    DDSketch,
    bin_index,
    encode_empty,
)
from tests.harness.sketchread import decode, go_quantile

QUANTILES = [i / 100 for i in range(101)] + [0.999, 0.9999]


def exact_quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[math.floor(q * (len(s) - 1))]


def assert_all_quantiles(values: list[float], qs: list[float] = QUANTILES) -> float:
    msg = decode(DDSketch.of(values).to_proto())
    worst = 0.0
    for q in qs:
        want, got = exact_quantile(values, q), go_quantile(msg, q)
        if want == 0:
            assert got == 0.0
            continue
        err = abs(got - want) / want
        assert err <= RELATIVE_ACCURACY * (1 + 1e-9), (q, want, got, err)
        worst = max(worst, err)
    return worst


def test_mapping_constants_are_datadogs() -> None:
    assert GAMMA == 1.015625 == (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
    assert INDEX_OFFSET == 1 - math.floor(math.log(1e-9) / math.log(GAMMA)) + 0.5 == 1338.5
    assert RELATIVE_ACCURACY == pytest.approx(1 / 129)
    msg = decode(DDSketch.of([1.0]).to_proto())
    assert msg.mapping.gamma == GAMMA and msg.mapping.indexOffset == INDEX_OFFSET
    assert msg.mapping.interpolation == IndexMapping.NONE


def test_index_is_floor_of_log_gamma_plus_offset() -> None:
    # 1 ns -> bin 1338 (floor(0 + 1338.5)); gamma**k ns -> bin 1338 + k
    assert bin_index(1.0) == 1338
    for k in (1, 10, 100, 1000):
        v = GAMMA ** k * 1.0000001
        assert bin_index(v) == math.floor(math.log(v) / math.log(GAMMA) + 1338.5) == 1338 + k
    msg = decode(DDSketch.of([1.0, 1.0, GAMMA ** 3 * 1.001]).to_proto())
    assert msg.positiveValues.contiguousBinIndexOffset == 1338
    assert list(msg.positiveValues.contiguousBinCounts) == [2.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize("name,values", [
    ("lognormal latencies", [random.Random(1).lognormvariate(16, 1.5) for _ in range(5000)]),
    ("uniform 1ms..2s", [random.Random(2).uniform(1e6, 2e9) for _ in range(5000)]),
    ("integers ns", [float(random.Random(3).randint(1, 10**7)) for _ in range(3000)]),
    ("one value", [123_456_789.0] * 50),
    ("two modes", [1e6] * 900 + [3e9] * 100),
    ("1 ns .. 3 h", [10 ** (i / 100) for i in range(0, 1300)]),
    ("with zeros", [0.0] * 30 + [5e5 + i for i in range(300)]),
])
def test_every_quantile_within_relative_accuracy_with_the_go_formula(
    name: str, values: list[float]
) -> None:
    assert_all_quantiles(values)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.just(0.0) | st.floats(min_value=1, max_value=1e13), min_size=1, max_size=300))
def test_property_quantiles_and_counts(values: list[float]) -> None:
    # durations in ns: 0 or >= 1; 1 ns .. 1e13 ns (2.8 h) fits in 2048 bins (no collapse)
    assert_all_quantiles(values, [0, 0.25, 0.5, 0.75, 0.9, 0.99, 1])
    msg = decode(DDSketch.of(values).to_proto())
    assert msg.zeroCount + sum(msg.positiveValues.contiguousBinCounts) == len(values)


def test_python_package_convention_reads_high_in_datadog() -> None:
    """Why we do not serialize the package's own sketch: its key is ceil(log_gamma v), so the Go
    formula reads its bins one bin high (wire.md §4.3). Our floor-based bins do not."""
    rng = random.Random(7)
    values = [rng.lognormvariate(15, 1) for _ in range(2000)]
    pkg = PackageSketch(RELATIVE_ACCURACY)
    for v in values:
        pkg.add(v)
    pkg_msg = DDSketchProto.to_proto(pkg)
    ours = decode(DDSketch.of(values).to_proto())
    med = exact_quantile(values, 0.5)
    assert go_quantile(pkg_msg, 0.5) / med - 1 > RELATIVE_ACCURACY / 2  # biased up
    assert abs(go_quantile(ours, 0.5) / med - 1) <= RELATIVE_ACCURACY


def test_zero_negative_and_non_finite() -> None:
    s = DDSketch()
    assert s.add(0.0) and s.add(0)
    assert not s.add(-1.0)
    assert not s.add(math.nan)
    assert not s.add(math.inf)
    assert not s.add(5.0, weight=math.nan)
    assert s.count == 2 and s.zero_count == 2
    msg = decode(s.to_proto())
    assert msg.zeroCount == 2 and not msg.positiveValues.contiguousBinCounts


def test_empty_sketch_bytes() -> None:
    raw = encode_empty()
    mapping = b"\x09" + struct.pack("<d", GAMMA) + b"\x11" + struct.pack("<d", INDEX_OFFSET)
    assert raw == b"\x0a" + bytes([len(mapping)]) + mapping + b"\x1a\x00"
    assert DDSketch().to_proto() == raw
    msg = decode(raw)
    assert msg.zeroCount == 0 and msg.HasField("negativeValues")


def test_low_collapse_keeps_at_most_2048_bins_and_the_high_quantiles() -> None:
    # 1 ns .. ~10^17 ns spans ~2600 bins: the lowest ones collapse
    values = [10 ** (i / 200) for i in range(0, 3400)]
    s = DDSketch.of(values)
    assert s.num_bins <= MAX_BINS
    msg = decode(s.to_proto())
    assert len(msg.positiveValues.contiguousBinCounts) <= MAX_BINS
    assert sum(msg.positiveValues.contiguousBinCounts) == len(values)
    for q in (0.5, 0.75, 0.9, 0.99, 1.0):
        want = exact_quantile(values, q)
        assert abs(go_quantile(msg, q) / want - 1) <= RELATIVE_ACCURACY
    # a value far below the full range lands in the lowest kept bin
    low_before = msg.positiveValues.contiguousBinIndexOffset
    s.add(1.0)
    msg2 = decode(s.to_proto())
    assert msg2.positiveValues.contiguousBinIndexOffset == low_before
    assert msg2.positiveValues.contiguousBinCounts[0] == msg.positiveValues.contiguousBinCounts[0] + 1


def test_merge_equals_one_sketch_of_everything() -> None:
    rng = random.Random(5)
    a_vals = [rng.lognormvariate(14, 1) for _ in range(500)]
    b_vals = [rng.lognormvariate(18, 1) for _ in range(500)] + [0.0]
    a, b = DDSketch.of(a_vals), DDSketch.of(b_vals)
    a.merge(b)
    assert a.to_proto() == DDSketch.of(a_vals + b_vals).to_proto()


def test_package_decoder_agrees_on_counts() -> None:
    values = [1e3, 2e3, 2e3, 5e8, 0.0]
    restored = DDSketchProto.from_proto(decode(DDSketch.of(values).to_proto()))
    assert restored.count == len(values)
    assert DDSketch.of(values).quantile(0.5) == pytest.approx(2e3, rel=RELATIVE_ACCURACY)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**16), max_size=400))
def test_add_ns_fast_path_equals_add(durations: list[int]) -> None:
    a, b = DDSketch(), DDSketch()
    for d in durations:
        a.add(float(d))
        b.add_ns(d)
    assert a.to_proto() == b.to_proto() and a.count == b.count == len(durations)
