"""The compiled v0.4/v0.5 encoders (``encoding/_fastpack.pyx``) against the pure ones, byte for byte.

Three encodings are compared on every payload: the compiled function itself, the encoder with
the compiled path switched off (``use_compiled(False)``: ormsgpack or msgpack) and plain
``msgpack.Packer(use_bin_type=True)`` on the documented payload. Anything outside the plain
shape must make the compiled function return ``None`` and the encoder produce the pure bytes
(or raise the pure path's exception type).

The compiled module must be importable unless ``OTEL_DD_BRIDGE_NO_EXTENSIONS`` is set (read at
import: the autouse fixture clears ``OTEL_*`` variables for each test).
"""

from __future__ import annotations

import enum
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_dd_bridge.encoding import V04Encoder, V05Encoder, msgpack_v04, msgpack_v05
from otel_dd_bridge.encoding._pack import use_compiled, use_ormsgpack
from otel_dd_bridge.model import DDSpan, DDSpanEvent, DDSpanLink, TraceChunk

NO_EXTENSIONS = os.environ.get("OTEL_DD_BRIDGE_NO_EXTENSIONS", "").strip() not in ("", "0")

_fastpack: ModuleType | None
try:
    from otel_dd_bridge.encoding import _fastpack
except ImportError:
    _fastpack = None

INT_BOUNDARIES = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**30 - 1, 2**30, 2**32 - 1, 2**32,
                  2**60 - 1, 2**60, 2**62 + 12345, 2**63 - 1, 2**63,
                  2**64 - 1, -1, -32, -33, -128, -129, -32768, -32769, -2**31, -2**31 - 1,
                  -2**63]
STR_LENGTHS = [0, 1, 31, 32, 255, 256, 65535, 65536]
FLOATS = [0.0, -0.0, 1.5, -2.25, 1e308, -1e308, 5e-324, float("inf"), float("-inf"),
          float("nan")]


@pytest.fixture
def fast() -> ModuleType:
    if _fastpack is None:
        if NO_EXTENSIONS:
            pytest.skip("OTEL_DD_BRIDGE_NO_EXTENSIONS is set")
        pytest.fail("otel_dd_bridge.encoding._fastpack is not built (compiled encoder missing)")
    return _fastpack


@pytest.fixture(autouse=True)
def _restore_switches() -> Iterator[None]:
    compiled, orm = use_compiled(True), use_ormsgpack(True)
    yield
    use_compiled(compiled)
    use_ormsgpack(orm)


def test_compiled_module_is_built_and_used() -> None:
    if NO_EXTENSIONS:
        assert msgpack_v04._compiled is None and msgpack_v05._compiled is None
        pytest.skip("OTEL_DD_BRIDGE_NO_EXTENSIONS is set")
    assert _fastpack is not None, "otel_dd_bridge.encoding._fastpack is not built"
    assert msgpack_v04._compiled is _fastpack.encode_v04
    assert msgpack_v05._compiled is _fastpack.encode_v05


def test_use_compiled_returns_previous() -> None:
    assert use_compiled(False) is True
    assert use_compiled(True) is False
    assert use_compiled(True) is True


def test_env_opt_out_keeps_the_module_unused() -> None:
    code = ("from otel_dd_bridge.encoding import msgpack_v04, msgpack_v05; "
            "assert msgpack_v04._compiled is None and msgpack_v05._compiled is None")
    env = dict(os.environ, OTEL_DD_BRIDGE_NO_EXTENSIONS="1")
    subprocess.run([sys.executable, "-c", code], check=True, env=env,
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# -- reference encodings ------------------------------------------------------------------------


def _msgpack_v04(chunks: list[TraceChunk]) -> bytes:
    payload = [[{"trace_id": s.trace_id, "span_id": s.span_id, "parent_id": s.parent_id,
                 "service": s.service, "name": s.name, "resource": s.resource, "type": s.type,
                 "start": s.start, "duration": s.duration, "error": s.error, "meta": s.meta,
                 "metrics": s.metrics} for s in c.spans] for c in chunks]
    out: bytes = msgpack.Packer(use_bin_type=True).pack(payload)
    return out


def _pure(encoder: Callable[[], Any], chunks: Any, *, orm: bool = True) -> bytes:
    prev_c, prev_o = use_compiled(False), use_ormsgpack(orm)
    try:
        out: bytes = encoder().encode(chunks)
        return out
    finally:
        use_compiled(prev_c)
        use_ormsgpack(prev_o)


def assert_identical(fast: ModuleType, chunks: list[TraceChunk]) -> None:
    """The compiled path handles ``chunks`` and matches both pure paths and plain msgpack."""
    got4 = fast.encode_v04(chunks)
    assert got4 is not None, "compiled v0.4 fell back on a plain payload"
    assert got4 == _pure(V04Encoder, chunks) == _pure(V04Encoder, chunks, orm=False)
    assert got4 == _msgpack_v04(chunks)
    assert V04Encoder().encode(chunks) == got4
    got5 = fast.encode_v05(chunks)
    assert got5 is not None, "compiled v0.5 fell back on a plain payload"
    # with ormsgpack off the pure v0.5 encoder is exactly msgpack.Packer(use_bin_type=True)
    assert got5 == _pure(V05Encoder, chunks) == _pure(V05Encoder, chunks, orm=False)
    assert V05Encoder().encode(chunks) == got5


def _span(**kw: Any) -> DDSpan:
    base: dict[str, Any] = dict(
        trace_id=2**64 - 1, span_id=7, parent_id=0, service="svc", name="op", resource="GET /",
        type="web", start=1_700_000_000_000_000_000, duration=5, error=1,
        meta={"a": "b", "é": "ü"}, metrics={"m": 1.5, "n": 2})
    base.update(kw)
    return DDSpan(**base)


def _one(**kw: Any) -> list[TraceChunk]:
    return [TraceChunk(spans=[_span(**kw)])]


# -- byte-identical on the plain shape ---------------------------------------------------------


def test_benchmark_span_set(fast: ModuleType) -> None:
    from benchmarks.spanset import build_spans
    from otel_dd_bridge.translate import TranslateOptions, translate_spans

    chunks = translate_spans(build_spans(2000), TranslateOptions())
    assert sum(len(c.spans) for c in chunks) == 2000
    assert_identical(fast, chunks)
    for i in range(0, len(chunks), 37):  # smaller bodies too
        assert_identical(fast, chunks[i:i + 37])


# -- the shared meta tail (DDSpan._tail): written after the span's own meta, never merged -------


def _with_tail(tail: dict[str, Any], **kw: Any) -> DDSpan:
    s = _span(**kw)
    s._tail = tail
    return s


def _many_tails() -> list[TraceChunk]:
    tails = [{"env": f"e{i}", "otel.status_code": "Unset"} for i in range(40)]  # > N_TAILS
    return [TraceChunk(spans=[_with_tail(tails[(i * 7 + j) % 40], span_id=i * 3 + j + 1)
                              for j in range(3)]) for i in range(40)]


def _own(n: int) -> dict[str, str]:
    return {f"own{i}": "v" for i in range(n)}


def _tail(n: int, prefix: str = "t") -> dict[str, str]:
    return {f"{prefix}{i}": "w" for i in range(n)}


_SHARED = {"env": "prod", "otel.status_code": "Unset", "ü": "é" * 40}
TAIL_PAYLOADS: dict[str, Callable[[], list[TraceChunk]]] = {
    "one tail, many spans": lambda: [TraceChunk(spans=[
        _with_tail(dict(_SHARED), span_id=i) for i in range(1, 6)])],
    "one tail object shared": lambda: (lambda t: [
        TraceChunk(spans=[_with_tail(t, span_id=i) for i in range(1, 60)]),
        TraceChunk(spans=[_span(span_id=99), _with_tail(t, span_id=100)])])(dict(_SHARED)),
    "more tails than the cache": _many_tails,
    "empty tail": lambda: [TraceChunk(spans=[_with_tail({}), _with_tail({})])],
    "no own meta": lambda: [TraceChunk(spans=[_with_tail(dict(_SHARED), meta={})])],
    "fixmap full": lambda: [TraceChunk(spans=[_with_tail(_tail(5), meta=_own(10))])],
    "map16 from the sum": lambda: [TraceChunk(spans=[_with_tail(_tail(6), meta=_own(10))])],
    "map32 from the sum": lambda: [TraceChunk(spans=[_with_tail(_tail(65535), meta=_own(1))])],
    "long tail value": lambda: [TraceChunk(spans=[_with_tail({"big": "x" * 70000}),
                                                  _with_tail({"big": "x" * 70000})])],
}


@pytest.mark.parametrize("name", sorted(TAIL_PAYLOADS))
def test_meta_tail_same_bytes(fast: ModuleType, name: str) -> None:
    build = TAIL_PAYLOADS[name]
    chunks = build()
    tails = [s._tail for c in chunks for s in c.spans]
    got4, got5 = fast.encode_v04(chunks), fast.encode_v05(chunks)
    assert got4 is not None and got5 is not None
    # the compiled encoders merged nothing
    assert [s._tail for c in chunks for s in c.spans] == tails
    assert all(a is b for a, b in zip([s._tail for c in chunks for s in c.spans], tails,
                                      strict=True))
    # the pure encoders (which read the merged `.meta`) and plain msgpack of the merged dicts
    assert got4 == _pure(V04Encoder, build()) == _pure(V04Encoder, build(), orm=False)
    assert got4 == _msgpack_v04(build())
    assert got5 == _pure(V05Encoder, build()) == _pure(V05Encoder, build(), orm=False)
    assert V04Encoder().encode(build()) == got4 and V05Encoder().encode(build()) == got5


@pytest.mark.parametrize("value", INT_BOUNDARIES)
def test_int_boundaries(fast: ModuleType, value: int) -> None:
    assert_identical(fast, _one(metrics={"v": value}))
    chunks = _one(trace_id=value, span_id=value, parent_id=value, start=value, duration=value,
                  error=value)
    assert_identical(fast, chunks)


def test_int_headers_are_msgpacks_choice(fast: ModuleType) -> None:
    """Spot-check the header byte for each range (msgpack-python's smallest encoding)."""
    expected = {0: 0x00, 127: 0x7F, 128: 0xCC, 255: 0xCC, 256: 0xCD, 65535: 0xCD, 65536: 0xCE,
                2**32 - 1: 0xCE, 2**32: 0xCF, 2**64 - 1: 0xCF, -1: 0xFF, -32: 0xE0, -33: 0xD0,
                -128: 0xD0, -129: 0xD1, -32768: 0xD1, -32769: 0xD2, -2**31: 0xD2,
                -2**31 - 1: 0xD3, -2**63: 0xD3}
    for value, head in expected.items():
        body = fast.encode_v04(_one(metrics={}, error=value))
        i = body.index(b"\xa5error") + 6
        assert body[i] == head, value
        assert msgpack.unpackb(body)[0][0]["error"] == value


@pytest.mark.parametrize("value", FLOATS)
def test_floats(fast: ModuleType, value: float) -> None:
    assert_identical(fast, _one(metrics={"f": value, "i": 3}))


@pytest.mark.parametrize("n", STR_LENGTHS)
def test_str_lengths(fast: ModuleType, n: int) -> None:
    s = "x" * n
    assert_identical(fast, _one(service=s, name=s, resource=s, type=s, meta={s: s, "k": s},
                                metrics={s: 1.0}))


@pytest.mark.parametrize("n", [10, 31, 32, 100, 30000])
def test_non_ascii(fast: ModuleType, n: int) -> None:
    for ch in ("é", "€", "😀", "a😀é€"):
        s = (ch * n)[:n]
        assert_identical(fast, _one(service=s, resource="GET /" + s, meta={s: s, "k": s + "x"},
                                    metrics={s: 2}))


@pytest.mark.parametrize("n", [0, 1, 15, 16, 65535, 65536])
def test_map_sizes(fast: ModuleType, n: int) -> None:
    meta = {f"k{i}": f"v{i}" for i in range(n)}
    metrics: dict[str, float | int] = {f"m{i}": (i if i % 2 else i + 0.5) for i in range(n)}
    assert_identical(fast, _one(meta=meta, metrics=metrics))


@pytest.mark.parametrize("n", [0, 1, 15, 16, 65536])
def test_array_sizes(fast: ModuleType, n: int) -> None:
    spans = [_span(span_id=i, meta={}, metrics={}) for i in range(n)]
    assert_identical(fast, [TraceChunk(spans=spans)])
    if n <= 16:
        assert_identical(fast, [TraceChunk(spans=[_span(span_id=i)]) for i in range(n)])


def test_empty_payloads(fast: ModuleType) -> None:
    assert_identical(fast, [])
    assert fast.encode_v04([]) == b"\x90"
    assert_identical(fast, [TraceChunk(spans=[])])
    assert_identical(fast, _one(meta={}, metrics={}, type="", service="", name="", resource=""))


def test_tuples_and_empty_newer_keys(fast: ModuleType) -> None:
    chunks = [TraceChunk(spans=[_span(), _span(span_id=8)])]
    want4, want5 = fast.encode_v04(chunks), fast.encode_v05(chunks)
    tupled: Any = tuple(chunks)
    assert fast.encode_v04(tupled) == want4 and fast.encode_v05(tupled) == want5
    try:
        tupled = [TraceChunk(spans=tuple(chunks[0].spans))]  # type: ignore[arg-type]
    except TypeError:  # a mypyc-compiled model checks the annotation
        pass
    else:
        assert fast.encode_v04(tupled) == want4 and fast.encode_v05(tupled) == want5
    # empty newer keys are omitted by the pure encoder: the compiled one leaves them to it
    empty = _one(meta_struct={}, span_links=[], span_events=[])
    assert fast.encode_v04(empty) is None
    assert V04Encoder().encode(empty) == _pure(V04Encoder, empty) == _msgpack_v04(empty)


def test_string_table_order(fast: ModuleType) -> None:
    """v0.5 numbers strings in first use: meta (key, value), metrics keys, service, name,
    resource, type; repeated strings reuse their index."""
    spans = [_span(service="b", name="a", resource="meta-v", type="", meta={"k": "meta-v"},
                   metrics={"b": 1}),
             _span(service="z", name="k", resource="a", type="web", meta={"y": "z", "k": "y"},
                   metrics={"q": 2.5, "b": 3})]
    chunks = [TraceChunk(spans=spans)]
    assert_identical(fast, chunks)
    table, _ = msgpack.unpackb(fast.encode_v05(chunks), strict_map_key=False)
    assert table == ["", "k", "meta-v", "b", "a", "y", "z", "q", "web"]


# -- hypothesis: random plain spans ------------------------------------------------------------

ints = st.one_of(st.sampled_from(INT_BOUNDARIES), st.integers(-2**63, 2**64 - 1))
text = st.text(max_size=40)
numbers = st.one_of(ints, st.floats(), st.sampled_from(FLOATS))
spans_st = st.builds(
    DDSpan, trace_id=ints, span_id=ints, parent_id=ints, service=text, name=text,
    resource=text, type=text, start=ints, duration=ints, error=ints,
    meta=st.dictionaries(text, text, max_size=20),
    metrics=st.dictionaries(text, numbers, max_size=20))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(spans_st, max_size=5), max_size=5))
def test_random_spans_identical(rows: list[list[DDSpan]]) -> None:
    if _fastpack is None:
        assert NO_EXTENSIONS, "otel_dd_bridge.encoding._fastpack is not built"
        return
    chunks = [TraceChunk(spans=spans) for spans in rows]
    assert_identical(_fastpack, chunks)


# -- fallbacks: outside the plain shape, the pure path decides ---------------------------------


class _Str(str):
    pass


class _Int(int):
    pass


class _Float(float):
    pass


class _Dict(dict):  # type: ignore[type-arg]
    pass


class _Color(enum.IntEnum):
    RED = 1


class _SubSpan(DDSpan):
    __slots__ = ()


FALLBACK_PAYLOADS: dict[str, Callable[[], list[TraceChunk]]] = {
    "meta_struct": lambda: _one(meta_struct={"appsec": b"\x81\xa1a\x01"}),
    "span_links": lambda: _one(span_links=[DDSpanLink(trace_id=1, span_id=2, flags=2**31 | 1)]),
    "span_events": lambda: _one(span_events=[DDSpanEvent(name="e", time_unix_nano=5,
                                                          attributes={"a": [1, 2.5, "x"]})]),
    "dict subclass meta": lambda: _one(meta=_Dict(a="b")),
    "dict subclass metrics": lambda: _one(metrics=_Dict(a=1.0)),
    "str subclass value": lambda: _one(meta={"a": _Str("b")}),
    "str subclass key": lambda: _one(meta={_Str("a"): "b"}),
    "str subclass service": lambda: _one(service=_Str("svc")),
    "int subclass": lambda: _one(span_id=_Int(5)),
    "int enum": lambda: _one(error=_Color.RED),
    "bool error": lambda: _one(error=True),
    "bool metric": lambda: _one(metrics={"b": True, "c": False}),
    "float subclass metric": lambda: _one(metrics={"f": _Float(1.5)}),
    "int meta value": lambda: _one(meta={"a": 1}),
    "int meta key": lambda: _one(meta={1: "a"}),
    "span subclass": lambda: [TraceChunk(spans=[_SubSpan(*_span()._fields())])],
    "dict subclass tail": lambda: [TraceChunk(spans=[_with_tail(_Dict(t="w"))])],
    "int tail value": lambda: [TraceChunk(spans=[_with_tail({"t": 1})])],
    "str subclass tail key": lambda: [TraceChunk(spans=[_with_tail({_Str("t"): "w"})])],
    "list subclass spans": lambda: [TraceChunk(spans=type("L", (list,), {})([_span()]))],
}


@pytest.mark.parametrize("name", sorted(FALLBACK_PAYLOADS))
def test_fallback_same_bytes(fast: ModuleType, name: str) -> None:
    try:
        chunks = FALLBACK_PAYLOADS[name]()
    except TypeError:  # a mypyc-compiled model refuses the value itself
        pytest.skip("the model refuses this value")
    got = fast.encode_v04(chunks)
    # None (the pure path packs), or the pure bytes when the model's getters already hand out
    # plain values (a mypyc-compiled model stores an int subclass or a bool as a plain int)
    assert got is None or got == _pure(V04Encoder, chunks, orm=False)
    assert V04Encoder().encode(chunks) == _pure(V04Encoder, chunks)
    assert V04Encoder().encode(chunks) == _pure(V04Encoder, chunks, orm=False)
    if name not in ("int meta key",):  # the pure v0.5 encoder needs str keys (a table lookup)
        assert V05Encoder().encode(chunks) == _pure(V05Encoder, chunks, orm=False)


def test_fallback_non_list_chunks(fast: ModuleType) -> None:
    chunks = [TraceChunk(spans=[_span()]), TraceChunk(spans=[_span(span_id=3)])]
    want4, want5 = fast.encode_v04(chunks), fast.encode_v05(chunks)
    assert fast.encode_v04(iter(chunks)) is None and fast.encode_v05(iter(chunks)) is None
    assert V04Encoder().encode(iter(chunks)) == want4  # type: ignore[arg-type]
    assert V05Encoder().encode(iter(chunks)) == want5  # type: ignore[arg-type]


def _raises(fn: Callable[[], object]) -> type[BaseException]:
    with pytest.raises(Exception) as info:  # noqa: PT011 - compared below
        fn()
    return info.type


ERROR_PAYLOADS: dict[str, Callable[[], list[TraceChunk]]] = {
    "lone surrogate meta": lambda: _one(meta={"a": "x\ud800y"}),
    "lone surrogate key": lambda: _one(meta={"\udfff": "v"}),
    "lone surrogate service": lambda: _one(service="\ud83d"),
    "int too large": lambda: _one(span_id=2**64),
    "int too small": lambda: _one(start=-2**63 - 1),
    "huge metric": lambda: _one(metrics={"m": 10**400}),
}


@pytest.mark.parametrize("name", sorted(ERROR_PAYLOADS))
def test_fallback_same_exception(fast: ModuleType, name: str) -> None:
    chunks = ERROR_PAYLOADS[name]()
    assert fast.encode_v04(chunks) is None and fast.encode_v05(chunks) is None
    for enc in (V04Encoder, V05Encoder):
        got = _raises(lambda enc=enc: enc().encode(chunks))  # type: ignore[misc]
        assert got is _raises(lambda enc=enc: _pure(enc, chunks))  # type: ignore[misc]
        assert got is _raises(lambda enc=enc: _pure(enc, chunks, orm=False))  # type: ignore[misc]
    # nothing left behind: the next plain payload encodes normally
    assert_identical(fast, _one())


def test_unset_slot_falls_back(fast: ModuleType) -> None:
    span = _span()
    try:
        del span._meta  # the pure path raises AttributeError
    except AttributeError:  # a mypyc-compiled model: attributes cannot be unset
        pytest.skip("the model's attributes cannot be deleted")
    chunks = [TraceChunk(spans=[span])]
    assert fast.encode_v04(chunks) is None and fast.encode_v05(chunks) is None
    with pytest.raises(AttributeError):
        V04Encoder().encode(chunks)


def test_results_are_independent(fast: ModuleType) -> None:
    """Buffers are independent per call: results do not alias each other."""
    a = _one(service="a")
    b = _one(service="b")
    ra, rb = fast.encode_v04(a), fast.encode_v04(b)
    assert ra != rb and fast.encode_v04(a) == ra
