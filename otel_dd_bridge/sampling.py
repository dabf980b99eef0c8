"""Sampling state shared between the exporter and samplers.

:class:`RateByService` keeps the Agent's latest ``rate_by_service`` answer (wire.md §1.6),
keyed ``service:<svc>,env:<env>`` with ``service:,env:`` as the default rate.
"""

from __future__ import annotations

import json
import logging
import threading

logger = logging.getLogger(__name__)

__all__ = ["RateByService"]


class RateByService:
    """The Agent's sampling-rate feedback, updated from each trace response."""

    DEFAULT_KEY = "service:,env:"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rates: dict[str, float] = {}

    def update_from_body(self, body: bytes) -> bool:
        """Parse an Agent response body; returns True when rates were read."""
        if not body:
            return False
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return False
        rates = doc.get("rate_by_service") if isinstance(doc, dict) else None
        if not isinstance(rates, dict):
            return False
        parsed = {
            str(k): float(v)
            for k, v in rates.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0
        }
        with self._lock:
            self._rates = parsed
        return True

    def rate(self, service: str, env: str) -> float | None:
        """The rate for a service/env, else the default rate, else None."""
        with self._lock:
            r = self._rates.get(f"service:{service},env:{env}")
            return r if r is not None else self._rates.get(self.DEFAULT_KEY)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._rates)


# The process-wide feedback store: every DatadogSpanExporter updates it and DatadogSampler reads
# it by default, because under `opentelemetry-instrument` the SDK builds the sampler and the
# exporter independently and neither can be handed the other.
GLOBAL_RATES = RateByService()
