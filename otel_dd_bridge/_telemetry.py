"""Self-observability: thread-safe counters and rate-limited logging."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

__all__ = ["ExportCounters", "RateLimitedLog"]


class ExportCounters:
    """Spans received, exported, retried and dropped (by reason). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._c: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        if n:
            with self._lock:
                self._c[name] += n

    def drop(self, reason: str, n: int) -> None:
        self.add("dropped." + reason, n)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._c)


class RateLimitedLog:
    """Logs a message at most once per ``interval`` seconds per key, counting the rest."""

    def __init__(
        self, logger: logging.Logger, interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def log(self, level: int, key: str, msg: str, *args: object) -> None:
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] += 1
                return
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            msg += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        try:
            self._logger.log(level, msg, *args)
        except Exception:  # noqa: BLE001 - logging at interpreter shutdown must not raise
            pass
