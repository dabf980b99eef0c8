"""Build hook: the optional compiled accelerator (everything else is in pyproject.toml).

* ``otel_dd_bridge/translate.py`` and ``model.py`` are compiled with mypyc (the same sources, no
  copy: mypyc turns their type annotations into C-level dict/int/str operations);
* ``otel_dd_bridge/encoding/_fastpack.pyx`` (Cython) writes the v0.4/v0.5 msgpack bodies;
* ``otel_dd_bridge/_gcutil.pyx`` (Cython) leaves translated spans out of the cyclic GC.

The pure-Python modules stay in the wheel and are used wherever an extension is absent:
``OTEL_DD_BRIDGE_NO_EXTENSIONS=1`` at build time (or at run time, see ``_accel.py``), no C
compiler, or a failed compile (a message on stderr, never a failed install). Tests compare the
two paths byte for byte (tests/test_compiled.py, tests/test_fastpack.py) and fail when the test
environment's build fell back to pure Python.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

COMPILED = ["otel_dd_bridge/translate.py", "otel_dd_bridge/model.py"]
CYTHON = {
    "otel_dd_bridge.encoding._fastpack": "otel_dd_bridge/encoding/_fastpack.pyx",
    "otel_dd_bridge._gcutil": "otel_dd_bridge/_gcutil.pyx",
}


class optional_build_ext(build_ext):  # noqa: N801 - setuptools command naming
    """A failed compile leaves the pure-Python module in place instead of failing the install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001
            self._skip(exc)

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._skip(exc)

    @staticmethod
    def _skip(exc: BaseException) -> None:
        print(f"otel-dd-bridge: compiled accelerator not built ({exc}); using pure Python",
              file=sys.stderr)


def _mypyc_modules() -> list:  # type: ignore[type-arg]
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("otel-dd-bridge: mypyc not available; translate/model stay pure Python",
              file=sys.stderr)
        return []
    try:
        # OpenTelemetry is not installed in the isolated build env: its types are Any here, so
        # the compiled code makes no assumption about the SDK version found at run time. Not
        # the project's strict mypy config (CI runs that on the source): with the SDK's types
        # missing it would reject Any-typed bases and returns, so the build uses defaults, its
        # own cache, and reports errors only in the compiled modules.
        flags = ["--config-file=", "--ignore-missing-imports", "--follow-imports=silent",
                 "--cache-dir=" + os.path.join("build", "mypyc-cache")]
        return list(mypycify(
            [*flags, *COMPILED], opt_level="3", group_name="otel_dd_bridge._compiled"
        ))
    except BaseException as exc:  # noqa: BLE001 - mypyc reports type errors via SystemExit
        print(f"otel-dd-bridge: mypyc failed ({exc!r}); translate/model stay pure Python",
              file=sys.stderr)
        return []


def _cython_modules() -> list:  # type: ignore[type-arg]
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError:
        print("otel-dd-bridge: Cython not available; the encoders stay pure Python",
              file=sys.stderr)
        return []
    try:
        return list(cythonize(
            [Extension(name, [src]) for name, src in CYTHON.items()],
            compiler_directives={"language_level": 3, "boundscheck": False, "wraparound": False},
            quiet=True,
        ))
    except BaseException as exc:  # noqa: BLE001
        print(f"otel-dd-bridge: Cython failed ({exc!r}); the encoders stay pure Python",
              file=sys.stderr)
        return []


def ext_modules() -> list:  # type: ignore[type-arg]
    if os.environ.get("OTEL_DD_BRIDGE_NO_EXTENSIONS", "").strip() not in ("", "0"):
        return []
    exts = _mypyc_modules() + _cython_modules()
    for ext in exts:
        ext.optional = True  # a compile error skips that module, it does not fail the install
    return exts


setup(ext_modules=ext_modules(), cmdclass={"build_ext": optional_build_ext})
