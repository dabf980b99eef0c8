"""The optional compiled accelerator: which modules are compiled, and the pure-Python switch.

``setup.py`` compiles :data:`COMPILED_MODULES` with mypyc from their own ``.py`` sources (the
wheel keeps both; Python's import system prefers the extension). The encoders' Cython helper
(``encoding/_fastpack``) and the GC helper (``_gcutil``) are reported here too. Setting ``OTEL_DD_BRIDGE_NO_EXTENSIONS=1`` in
the environment before the package is first imported makes every one of them run from its
Python source instead: same output byte for byte (tests compare the two), only slower. At build
time the same variable skips compiling altogether.

Importing this module (the package ``__init__`` does it first) applies the switch.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

__all__ = ["COMPILED_MODULES", "ENV_NO_EXTENSIONS", "compiled_status", "extensions_disabled"]

ENV_NO_EXTENSIONS = "OTEL_DD_BRIDGE_NO_EXTENSIONS"
# In import order: translate imports model.
COMPILED_MODULES = ("model", "translate")
_PACKAGE = __name__.rpartition(".")[0]
_HERE = os.path.dirname(os.path.abspath(__file__))


def extensions_disabled() -> bool:
    """``OTEL_DD_BRIDGE_NO_EXTENSIONS`` is set to anything but ``""`` or ``0``."""
    return os.environ.get(ENV_NO_EXTENSIONS, "").strip() not in ("", "0")


def _load_source(name: str) -> None:
    full = f"{_PACKAGE}.{name}"
    if full in sys.modules:  # already imported: too late to switch (and never twice)
        return
    path = os.path.join(_HERE, name + ".py")
    loader = importlib.machinery.SourceFileLoader(full, path)
    spec = importlib.util.spec_from_file_location(full, path, loader=loader)
    if spec is None:  # pragma: no cover - the file ships with the package
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module
    try:
        loader.exec_module(module)
    except BaseException:
        del sys.modules[full]
        raise


def compiled_status() -> dict[str, bool]:
    """Module name -> whether the loaded module is compiled (imports them if needed)."""
    out: dict[str, bool] = {}
    for name in (*COMPILED_MODULES, "encoding._fastpack", "_gcutil"):
        full = f"{_PACKAGE}.{name}"
        try:
            module = importlib.import_module(full)
        except ImportError:
            out[name] = False
            continue
        origin = getattr(module, "__file__", "") or ""
        out[name] = not origin.endswith(".py") and not extensions_disabled()
    return out


if extensions_disabled():
    for _name in COMPILED_MODULES:
        _load_source(_name)
