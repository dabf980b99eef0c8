"""Build hook: the optional compiled accelerator (everything else is in pyproject.toml).

``otel_dd_bridge/translate.py`` is compiled with mypyc (the same source, no copy: mypyc turns
its type annotations into C-level dict/int/str operations). The pure-Python module stays in the
wheel and is used wherever the extension is absent: ``OTEL_DD_BRIDGE_NO_EXTENSIONS=1`` at build
time, no C compiler, or a failed compile (a warning, never a failed install). Tests compare the
two on the same spans, byte for byte (tests/test_compiled.py).
"""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

COMPILED = ["otel_dd_bridge/translate.py", "otel_dd_bridge/model.py"]


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


def ext_modules() -> list:  # type: ignore[type-arg]
    if os.environ.get("OTEL_DD_BRIDGE_NO_EXTENSIONS", "").strip() not in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("otel-dd-bridge: mypyc not available; using pure Python", file=sys.stderr)
        return []
    try:
        # OpenTelemetry is not installed in the isolated build env: its types are Any here, so
        # the compiled code makes no assumption about the SDK version found at run time.
        return list(mypycify(
            ["--ignore-missing-imports", *COMPILED], opt_level="3", group_name="otel_dd_bridge._compiled"
        ))
    except BaseException as exc:  # noqa: BLE001 - mypyc reports type errors via SystemExit
        print(f"otel-dd-bridge: mypyc failed ({exc!r}); using pure Python", file=sys.stderr)
        return []


setup(ext_modules=ext_modules(), cmdclass={"build_ext": optional_build_ext})
