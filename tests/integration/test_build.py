"""Packaging: a machine without a working C compiler still gets a working, pure-Python install.

The compiled accelerator (setup.py) is optional. Here the wheel is built as pip builds it on a
user's machine (PEP 517, build isolation: setuptools, mypy and Cython from the registry), from
the project's files only, with ``CC``/``LDSHARED`` pointing at ``false`` so every compile fails.
The build must succeed, the wheel must hold the ``.py`` sources and no extension, and the
installed package must translate and encode a span. (The normal, compiled build is what the
rest of the suite runs on: tests/test_compiled.py fails if that build fell back.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _project_copy(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, check=True, capture_output=True).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / name.decode()
        if src.is_file():
            (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name.decode())
    return dest


def test_build_without_a_compiler_gives_a_pure_python_wheel(tmp_path: Path) -> None:
    src = _project_copy(tmp_path / "src")
    wheels = tmp_path / "wheels"
    env = dict(os.environ, CC="false", LDSHARED="false", CXX="false")
    env.pop("OTEL_DD_BRIDGE_NO_EXTENSIONS", None)
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-v",
         "-w", str(wheels), str(src)],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (wheel,) = wheels.glob("otel_dd_bridge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith((".so", ".pyd"))], names
    for need in ("otel_dd_bridge/translate.py", "otel_dd_bridge/model.py",
                 "otel_dd_bridge/encoding/msgpack_v04.py", "otel_dd_bridge/py.typed"):
        assert need in names
    assert "compiled accelerator not built" in res.stdout + res.stderr  # said, not silent

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile",
                    "--disable-pip-version-check", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    code = (
        "import otel_dd_bridge, otel_dd_bridge._accel as a\n"
        "from otel_dd_bridge.encoding import get_encoder\n"
        "from benchmarks.spanset import build_spans\n"
        "import sys\n"
        "assert otel_dd_bridge.__file__.startswith(sys.argv[1]), otel_dd_bridge.__file__\n"
        "assert not any(a.compiled_status().values()), a.compiled_status()\n"
        "chunks = otel_dd_bridge.translate_spans(build_spans(8), otel_dd_bridge.TranslateOptions())\n"
        "assert sum(len(c.spans) for c in chunks) == 8\n"
        "print(len(get_encoder('v0.4').encode(chunks)))\n"
    )
    # -S: no .pth files, so the test venv's editable install (a meta-path finder that maps
    # otel_dd_bridge.* to this checkout, extensions included) cannot shadow the wheel.
    site_dirs = [p for p in sys.path if p.endswith("site-packages")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), str(ROOT), *site_dirs]))
    env.pop("OTEL_DD_BRIDGE_NO_EXTENSIONS", None)
    out = subprocess.run([sys.executable, "-S", "-c", code, str(target)], cwd=tmp_path, env=env,
                         check=True,
                         capture_output=True, text=True, timeout=120)
    assert int(out.stdout.strip()) > 8 * 300
