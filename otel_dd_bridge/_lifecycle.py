"""Process lifecycle: behaviour after ``fork()`` and at interpreter exit.

**Fork** (gunicorn pre-fork workers, ``multiprocessing`` with the ``fork`` start method). A
child process inherits a copy of every object but only the thread that called ``fork()``. A
lock that another parent thread held at that instant stays locked for ever in the child, and a
pooled keep-alive connection would be shared by two processes writing interleaved requests onto
one socket. Components therefore register a bound method with :func:`on_fork_child`; after a
fork, in the child only, each live one runs (weakly referenced: an exporter that was garbage
collected is skipped). They recreate their locks and conditions, drop the inherited connection
pool without closing it (closing would tear down the parent's TLS session) and reset counters:
the child's numbers describe the child. The SDK's ``BatchSpanProcessor`` clears its own queue in
the child, so no span is exported twice.

**Exit.** ``TracerProvider`` registers its own ``atexit`` shutdown, which flushes the batch
processor through ``export()``; with the Agent down that flush would wait the whole retry
deadline. :func:`on_exit` registers a bound method run by one ``atexit`` handler that is
(re)registered last, so it runs *before* the provider's (``atexit`` is last-in first-out). The
exporter uses it to arm an exit deadline (see :class:`StopEvent`): the flush still happens,
but no retry backoff outlives the deadline. Every callback is guarded: logging or raising at
interpreter shutdown must never surface to the user.

Stdlib only; imported by the package, importing nothing from it.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["StopEvent", "on_exit", "on_fork_child", "reinit_lock", "runtime_id"]

# One id per process, as a Datadog tracer's runtime-id: traces and stats of one process carry the
# same value, and a forked child gets its own (set before any fork callback runs).
_runtime_id = str(uuid.uuid4())


def runtime_id() -> str:
    """This process's runtime id (a UUID4, new in each forked child)."""
    return _runtime_id

_fork_callbacks: list[weakref.WeakMethod[Callable[[], None]]] = []
_exit_callbacks: list[weakref.WeakMethod[Callable[[], None]]] = []
_registry_lock = threading.Lock()
_exit_registered = False


def _prune_and_call(callbacks: list[weakref.WeakMethod[Callable[[], None]]]) -> None:
    alive = []
    for ref in list(callbacks):
        fn = ref()
        if fn is None:
            continue
        alive.append(ref)
        try:
            fn()
        except Exception:  # noqa: BLE001 - a lifecycle hook must never raise into the host
            pass
    callbacks[:] = alive


def _after_fork_in_child() -> None:
    global _registry_lock, _runtime_id
    _runtime_id = str(uuid.uuid4())
    _registry_lock = threading.Lock()  # it may have been held by a parent thread
    _prune_and_call(_fork_callbacks)


def _at_exit() -> None:
    _prune_and_call(_exit_callbacks)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def on_fork_child(method: Callable[[], None]) -> None:
    """Run the bound ``method`` in the child process after every ``fork()`` (weak reference)."""
    with _registry_lock:
        _fork_callbacks.append(weakref.WeakMethod(method))


def on_exit(method: Callable[[], None]) -> None:
    """Run the bound ``method`` at interpreter exit, before ``atexit`` handlers registered earlier.

    Our single handler is unregistered and registered again on each call so that it stays the
    most recent one, ahead of any ``TracerProvider`` created before this call.
    """
    global _exit_registered
    with _registry_lock:
        _exit_callbacks.append(weakref.WeakMethod(method))
        if _exit_registered:
            atexit.unregister(_at_exit)
        atexit.register(_at_exit)
        _exit_registered = True


def reinit_lock(lock: Any) -> None:
    """Reset a lock, condition or event inherited from the parent to its initial state, in place.

    In place matters: other objects hold references to it. CPython (3.9+) gives these objects
    ``_at_fork_reinit``, which the stdlib's own fork handlers use.
    """
    reinit = getattr(lock, "_at_fork_reinit", None)
    if reinit is not None:
        reinit()


class StopEvent(threading.Event):
    """The exporter's stop signal: ``set()`` by ``shutdown()``, or implied by an exit deadline.

    Retry backoffs wait on it (``wait`` returns True = "stop waiting, give up"). Once
    :meth:`set_deadline` armed a monotonic deadline, a ``wait`` in progress or to come never
    sleeps past it and reports True when it has passed, so retries at interpreter exit end
    within a bound while the batch processor's final flush still gets its attempts.

    A subclass of :class:`threading.Event` for its type only: every method is reimplemented on
    one private condition (so that arming the deadline can wake waiters without setting it).
    """

    def __init__(self) -> None:  # no super().__init__(): the base state is unused
        self._stop_cond = threading.Condition(threading.Lock())
        self._stop_flag = False
        self._deadline: float | None = None

    def is_set(self) -> bool:
        return self._stop_flag

    def set(self) -> None:
        with self._stop_cond:
            self._stop_flag = True
            self._stop_cond.notify_all()

    def clear(self) -> None:
        with self._stop_cond:
            self._stop_flag = False

    def set_deadline(self, deadline: float) -> None:
        with self._stop_cond:
            if self._deadline is None or deadline < self._deadline:
                self._deadline = deadline
            self._stop_cond.notify_all()

    @property
    def deadline(self) -> float | None:
        return self._deadline

    def expired(self) -> bool:
        dl = self._deadline
        return dl is not None and time.monotonic() >= dl

    def wait(self, timeout: float | None = None) -> bool:
        end = None if timeout is None else time.monotonic() + timeout
        with self._stop_cond:
            while not self._stop_flag:
                limits = [x for x in (end, self._deadline) if x is not None]
                if not limits:
                    self._stop_cond.wait()
                    continue
                remaining = min(limits) - time.monotonic()
                if remaining <= 0:
                    break
                self._stop_cond.wait(remaining)
            return self._stop_flag or self.expired()

    def after_fork_in_child(self) -> None:
        """Keep the flag and deadline, replace the lock a parent thread may have held."""
        self._stop_cond = threading.Condition(threading.Lock())
