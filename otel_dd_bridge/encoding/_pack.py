"""The msgpack packer behind the v0.4/v0.5 encoders: ormsgpack when installed, else msgpack.

``ormsgpack`` (optional, ``pip install otel-dd-bridge[fast]``) packs the same Python objects
into the same bytes as ``msgpack.Packer(use_bin_type=True)`` (smallest int/str/map headers,
floats as float64, bytes as bin, tuples as arrays; tests compare the two on the benchmark's
span set and on edge values) in about half the time. Anything ormsgpack refuses (an int
subclass, a lone surrogate, an out-of-range int, ...) is packed again by msgpack, so errors
and their types are msgpack's, exactly as without the accelerator. Tests switch it with
:func:`use_ormsgpack`.

The v0.4/v0.5 encoders also try the compiled encoder (``_fastpack``, Cython, optional) first;
:func:`use_compiled` switches it for tests, and ``OTEL_DD_BRIDGE_NO_EXTENSIONS=1`` (read once,
at import) keeps it unused.
"""

from __future__ import annotations

import threading
from typing import Any

import msgpack

from otel_dd_bridge._accel import extensions_disabled

_orm: Any
try:  # pragma: no cover - depends on the install
    import ormsgpack as _orm

    _ORM_OPTS = _orm.OPT_NON_STR_KEYS
except ImportError:  # pragma: no cover
    _orm = None
    _ORM_OPTS = 0

__all__ = ["HAVE_ORMSGPACK", "NO_EXTENSIONS", "Packer", "use_compiled", "use_ormsgpack"]

HAVE_ORMSGPACK = _orm is not None
NO_EXTENSIONS = extensions_disabled()
_state = {"orm": HAVE_ORMSGPACK, "compiled": True}


def use_compiled(on: bool) -> bool:
    """Turn the compiled v0.4/v0.5 encoders on/off (tests); returns the previous setting."""
    prev = _state["compiled"]
    _state["compiled"] = bool(on)
    return prev


def use_ormsgpack(on: bool) -> bool:
    """Turn the accelerator on/off (tests); returns the previous setting."""
    prev = _state["orm"]
    _state["orm"] = bool(on) and HAVE_ORMSGPACK
    return prev


class Packer:
    """``pack(obj) -> bytes``; one msgpack ``Packer`` per thread for the fallback."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _msgpack(self) -> msgpack.Packer:
        packer: msgpack.Packer | None = getattr(self._local, "packer", None)
        if packer is None:
            packer = msgpack.Packer(autoreset=True, use_bin_type=True)
            self._local.packer = packer
        return packer

    def pack(self, obj: Any) -> bytes:
        if _state["orm"]:
            try:
                out: bytes = _orm.packb(obj, option=_ORM_OPTS)
                return out
            except Exception:  # noqa: BLE001,S110 - msgpack decides (and raises its own error)
                pass
        data: bytes = self._msgpack().pack(obj)
        return data
