"""The compiled accelerator (setup.py, otel_dd_bridge/_accel.py) against the pure-Python source.

* The test run uses the compiled modules (a build that silently fell back to pure Python fails
  here), and they are not older than their sources (a stale in-place build would test old code).
* ``OTEL_DD_BRIDGE_NO_EXTENSIONS=1`` really loads the ``.py`` sources.
* The two give the same translation, byte for byte, on the seeded corpus of
  tests/harness/translate_corpus.py (every field, meta/metrics in order, several option sets).

The translation's own test modules also run a second time in pure-Python mode (scripts/run.sh).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from otel_dd_bridge import _accel

ROOT = Path(__file__).resolve().parents[1]


def _run(code: list[str], pure: bool) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop(_accel.ENV_NO_EXTENSIONS, None)
    if pure:
        env[_accel.ENV_NO_EXTENSIONS] = "1"
    return subprocess.run([sys.executable, *code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=True)


def test_compiled_modules_are_loaded_and_current() -> None:
    status = _accel.compiled_status()
    assert all(status.values()), status  # a build that fell back to pure Python fails here
    pkg = ROOT / "otel_dd_bridge"
    sources = {name: pkg / f"{name}.py" for name in _accel.COMPILED_MODULES}
    sources["encoding._fastpack"] = pkg / "encoding" / "_fastpack.pyx"
    sources["_gcutil"] = pkg / "_gcutil.pyx"
    for name, src in sources.items():
        mod = sys.modules[f"otel_dd_bridge.{name}"]
        so = Path(mod.__file__ or "")
        if so.parent != src.parent:  # an installed wheel: built from what it ships
            continue
        assert so.stat().st_mtime >= src.stat().st_mtime, (
            f"{so.name} is older than {name}.py: rebuild (pip install -e . or "
            "python setup.py build_ext --inplace --force)")


def test_no_extensions_switch_loads_the_sources() -> None:
    out = _run(["-c", (
        "import otel_dd_bridge.translate as t, otel_dd_bridge.model as m, otel_dd_bridge._accel as a;"
        "print(t.__file__, m.__file__, sorted(k for k, v in a.compiled_status().items() if v))"
    )], pure=True).stdout.split()
    assert out[0].endswith("translate.py") and out[1].endswith("model.py"), out
    assert out[2:] == ["[]"], out


def test_compiled_and_pure_translation_are_byte_identical(tmp_path: Path) -> None:
    files = {}
    for pure in (False, True):
        path = tmp_path / f"corpus-{'pure' if pure else 'compiled'}.json"
        _run(["-m", "tests.harness.translate_corpus", str(path)], pure=pure)
        files[pure] = path.read_bytes()
    compiled, pure_bytes = files[False], files[True]
    assert len(compiled) > 1_000_000  # the corpus really ran (~18 MB)
    if compiled != pure_bytes:
        n = min(len(compiled), len(pure_bytes))
        i = next((i for i in range(n) if compiled[i] != pure_bytes[i]), n)
        pytest.fail(f"first difference at byte {i}: compiled {compiled[i - 80:i + 80]!r} "
                    f"vs pure {pure_bytes[i - 80:i + 80]!r}")


def test_translated_objects_are_left_out_of_the_cyclic_gc() -> None:
    """Compiled: a batch's spans, chunks and chunk lists are not GC-tracked, so translating
    512 spans leaves almost no new tracked object for the collector to walk or promote; the
    pure-Python path leaves them tracked (>= one per span). Untracked objects still free by
    reference counting."""
    code = """
import gc, sys
from otel_dd_bridge._gcutil import untrack
from otel_dd_bridge.translate import TranslateOptions, _Cache, translate_spans_with_stats
from benchmarks.spanset import build_spans
spans = build_spans(512)[:512]  # 128 web requests of 4 spans, one tracer (real SDK)
opts, cache = TranslateOptions(), _Cache(16)
translate_spans_with_stats(spans, opts, _cache=cache)
assert untrack(7) == 7 and untrack("x") == "x"  # not a GC type: returned as is
gc.collect()
gc.disable()
before = {id(o) for o in gc.get_objects(0)}
r = translate_spans_with_stats(spans, opts, _cache=cache)
young = [o for o in gc.get_objects(0) if id(o) not in before]
c = r.chunks[0]
print(len(r.chunks), len(young), gc.is_tracked(c), gc.is_tracked(c.spans),
      gc.is_tracked(c.spans[0]), sys.getrefcount(c.spans[0]))
"""
    for pure in (False, True):
        out = _run(["-c", code], pure=pure).stdout.split()
        chunks, young = int(out[0]), int(out[1])
        assert chunks == 128
        if pure:
            assert young >= 512 and out[2:5] == ["True", "True", "True"], out
        else:
            assert young <= 8 and out[2:5] == ["False", "False", "False"], out
        assert out[5] == "2"  # only the chunk's list (and getrefcount's argument) hold it
