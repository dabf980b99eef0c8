"""The span model behaves the same compiled (mypyc) and pure: subclass, copy, pickle, compare.

Runs in both modes (scripts/run.sh re-runs it with OTEL_DD_BRIDGE_NO_EXTENSIONS=1).
"""

from __future__ import annotations

import copy
import dataclasses
import pickle

from otel_dd_bridge.model import DDSpan, PayloadInfo, TraceChunk


def _span(**kw: object) -> DDSpan:
    s = DDSpan(1, 2, 0, "svc", "op", "res", "web", 10, 5, 0, {"a": "b"}, {"m": 1.5})
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_subclasses_copy_pickle_and_equality() -> None:
    class Mine(DDSpan):
        def label(self) -> str:
            return f"{self.service}/{self.name}"

    m = Mine(1, 2, 0, "svc", "op", "res", "web", 10, 5, 0, {}, {})
    assert m.label() == "svc/op" and isinstance(m, DDSpan)
    s = _span()
    chunk = TraceChunk([s], priority=1, origin="rum", tags={"_dd.p.dm": "-4"},
                       payload=PayloadInfo(hostname="h"))
    for clone in (copy.copy(s), copy.deepcopy(s), pickle.loads(pickle.dumps(s))):
        assert clone == s and clone is not s
    deep = copy.deepcopy(chunk)
    assert deep == chunk and deep.spans[0] is not s and deep.spans[0].meta is not s.meta
    assert pickle.loads(pickle.dumps(chunk)) == chunk
    assert copy.copy(m).label() == "svc/op" and type(copy.copy(m)) is Mine
    assert s != _span(name="other")
    assert dataclasses.replace(s, name="x").name == "x"
    assert dataclasses.asdict(s)["meta"] == {"a": "b"}
    assert TraceChunk([]).tags == {} and TraceChunk([]).tags is not TraceChunk([]).tags
