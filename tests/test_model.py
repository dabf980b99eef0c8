"""The span model behaves the same compiled (mypyc) and pure: subclass, copy, pickle, compare,
and the shared meta tail is invisible to every reader.

Runs in both modes (scripts/run.sh re-runs it with OTEL_DD_BRIDGE_NO_EXTENSIONS=1).
"""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

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
    assert dataclasses.replace(chunk, origin="x").origin == "x"
    assert dataclasses.asdict(chunk)["spans"][0].meta == {"a": "b"}
    assert TraceChunk([]).tags == {} and TraceChunk([]).tags is not TraceChunk([]).tags


def _tailed(own: dict[str, str], tail: dict[str, str]) -> DDSpan:
    s = DDSpan(1, 2, 0, "svc", "op", "res", "web", 10, 5, 0, own, {})
    s._tail = tail
    return s


def test_meta_tail_reads_as_one_dict() -> None:
    tail = {"env": "prod", "otel.status_code": "Unset"}
    s = _tailed({"span.kind": "server"}, tail)
    # equality, repr and the accessors see the merged entries, and merge nothing
    assert s == _span(meta={"span.kind": "server", "env": "prod", "otel.status_code": "Unset"},
                      metrics={})
    assert s._tail is tail and "'env': 'prod'" in repr(s) and s._tail is tail
    assert s.meta_get("env") == "prod" and s.meta_get("span.kind") == "server"
    assert s.meta_get("nope") is None and s.meta_get("nope", "d") == "d"
    assert s.meta_setdefault("env", "dev") == "prod" and s._tail is tail
    assert s.meta_setdefault("new", "v") == "v" and s._meta["new"] == "v" and s._tail is tail
    s.meta_set("other", "1")  # not a tail key: the tail stays shared
    assert s._tail is tail and s._meta["other"] == "1"
    # a write of a tail key merges first: the new value wins, the shared dict is untouched
    s.meta_set("env", "staging")
    assert s._tail is None and s.meta["env"] == "staging" and tail["env"] == "prod"
    assert list(s.meta) == ["span.kind", "new", "other", "env", "otel.status_code"]


def test_meta_property_merges_once_and_never_touches_the_shared_tail() -> None:
    tail = {"env": "prod"}
    a, b = _tailed({"x": "1"}, tail), _tailed({"y": "2"}, tail)
    a.meta["env"] = "dev"  # reading .meta merges a's copy; b still shares the original
    assert a.meta == {"x": "1", "env": "dev"} and a._tail is None
    assert b.meta == {"y": "2", "env": "prod"} and tail == {"env": "prod"}
    c = _tailed({"x": "1"}, tail)
    c.meta = {"z": "3"}  # assignment replaces everything, tail included
    assert c.meta == {"z": "3"} and c._tail is None
    for clone in (copy.copy(_tailed({"x": "1"}, tail)), copy.deepcopy(_tailed({"x": "1"}, tail)),
                  pickle.loads(pickle.dumps(_tailed({"x": "1"}, tail)))):
        assert clone.meta == {"x": "1", "env": "prod"} and clone._tail is None
    assert tail == {"env": "prod"}


def test_meta_cannot_be_deleted() -> None:
    # compiled, a mypyc property setter would take the deletion and crash on the next read
    s = _span()
    with pytest.raises(AttributeError):
        del s.meta
    assert s.meta == {"a": "b"}
