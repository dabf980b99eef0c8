"""Delivery of trace chunks to the Agent: encode, size guard, send with retry, split, downgrade.

Decisions, in order, for one batch (all within one deadline):

* the body is encoded; a batch over ``max_payload_size`` is halved by chunks until each part
  fits; one chunk that alone exceeds it is dropped (reason ``payload_too_large``);
* each part is sent with :func:`~otel_dd_bridge.retry.send_with_retry`;
* 413 -> the part is halved and each half sent (a single chunk: dropped, ``payload_too_large``);
* 404/415 on v0.5 -> the Agent has no v0.5: switch to v0.4 for good and resend the same chunks;
* any other final 4xx -> dropped (``rejected``); retries exhausted -> dropped
  (``retry_deadline``), or ``shutdown`` when ``shutdown()`` interrupted the wait.

Every dropped span is counted by reason and logged (rate-limited).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from otel_dd_bridge._telemetry import ExportCounters, RateLimitedLog
from otel_dd_bridge.encoding import Encoder, get_encoder
from otel_dd_bridge.model import TraceChunk
from otel_dd_bridge.normalize import safe_str
from otel_dd_bridge.retry import RetryPolicy, Verdict, send_with_retry
from otel_dd_bridge.sampling import RateByService
from otel_dd_bridge.transport import HttpTransport

logger = logging.getLogger(__name__)

__all__ = ["AgentDelivery", "sanitize_chunks"]


def _span_count(chunks: Sequence[TraceChunk]) -> int:
    return sum(len(c.spans) for c in chunks)


def sanitize_chunks(chunks: Sequence[TraceChunk]) -> None:
    """Replace strings that are not valid UTF-8 (lone surrogates) in place."""
    for c in chunks:
        for s in c.spans:
            s.service, s.name = safe_str(s.service), safe_str(s.name)
            s.resource, s.type = safe_str(s.resource), safe_str(s.type)
            s.meta = {safe_str(k): safe_str(v) for k, v in s.meta.items()}
            s.metrics = {safe_str(k): v for k, v in s.metrics.items()}


class AgentDelivery:
    """Sends chunks to one Agent endpoint; never raises."""

    def __init__(
        self,
        transport: HttpTransport,
        *,
        api_version: str,
        max_payload_size: int,
        retry_timeout: float,
        counters: ExportCounters,
        rates: RateByService,
        base_headers: dict[str, str],
        stop: threading.Event,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._encoder: Encoder = get_encoder(api_version)
        self._max = max_payload_size
        self._retry_timeout = retry_timeout
        self._counters = counters
        self._rates = rates
        self._headers = base_headers
        self._stop = stop
        self._policy = policy or RetryPolicy()
        self._clock = clock
        self._log = RateLimitedLog(logger)
        self._lock = threading.Lock()

    @property
    def api_version(self) -> str:
        return self._encoder.api_version

    def deliver(self, chunks: Sequence[TraceChunk]) -> bool:
        """Deliver all chunks; True when every span was accepted."""
        if not chunks:
            return True
        return self._deliver(list(chunks), self._clock() + self._retry_timeout)

    def _drop(self, reason: str, chunks: Sequence[TraceChunk], detail: str) -> bool:
        n = _span_count(chunks)
        self._counters.drop(reason, n)
        self._log.log(
            logging.WARNING, reason, "dropped %d spans (%s): %s", n, reason, detail
        )
        return False

    def _encode(self, encoder: Encoder, chunks: list[TraceChunk]) -> bytes | None:
        try:
            return encoder.encode(chunks)
        except UnicodeEncodeError:
            sanitize_chunks(chunks)
        except Exception as exc:  # noqa: BLE001
            self._drop("encoding_error", chunks, f"{type(exc).__name__}: {exc}")
            return None
        try:
            return encoder.encode(chunks)
        except Exception as exc:  # noqa: BLE001
            self._drop("encoding_error", chunks, f"{type(exc).__name__}: {exc}")
            return None

    def _split(self, chunks: list[TraceChunk], deadline: float) -> bool:
        mid = len(chunks) // 2
        ok_a = self._deliver(chunks[:mid], deadline)
        ok_b = self._deliver(chunks[mid:], deadline)
        return ok_a and ok_b

    def _deliver(self, chunks: list[TraceChunk], deadline: float) -> bool:
        encoder = self._encoder
        body = self._encode(encoder, chunks)
        if body is None:
            return False
        if len(body) > self._max:
            if len(chunks) > 1:
                return self._split(chunks, deadline)
            return self._drop(
                "payload_too_large", chunks,
                f"one trace encodes to {len(body)} bytes > max_payload_size {self._max}",
            )
        headers = dict(self._headers)
        headers["Content-Type"] = encoder.content_type
        headers["X-Datadog-Trace-Count"] = str(len(chunks))
        path = encoder.path

        outcome = send_with_retry(
            lambda: self._transport.send("PUT", path, body, headers),
            deadline=deadline,
            policy=self._policy,
            api_version=encoder.api_version,
            clock=self._clock,
            wait=self._stop.wait,
            on_retry=lambda _c: self._counters.add("retried", _span_count(chunks)),
        )
        verdict = outcome.classification.verdict
        if verdict is Verdict.SUCCESS:
            self._counters.add("exported", _span_count(chunks))
            self._rates.update_from_body(outcome.result.body)
            return True
        if verdict is Verdict.SPLIT:
            if len(chunks) > 1:
                return self._split(chunks, deadline)
            return self._drop("payload_too_large", chunks, "the Agent answered 413")
        if verdict is Verdict.DOWNGRADE:
            with self._lock:
                if self._encoder.api_version == "v0.5":
                    self._encoder = get_encoder("v0.4")
                    logger.warning(
                        "the Agent has no /v0.5/traces (%s); using v0.4 from now on",
                        outcome.classification.reason,
                    )
            return self._deliver(chunks, deadline)
        if verdict is Verdict.DROP:
            body_text = outcome.result.body[:200].decode("utf-8", "replace")
            return self._drop(
                "rejected", chunks, f"{outcome.classification.reason} {body_text}".strip()
            )
        reason = "shutdown" if outcome.gave_up == "shutdown" else "retry_deadline"
        return self._drop(
            reason, chunks,
            f"{outcome.classification.reason} after {outcome.attempts} attempts "
            f"({outcome.gave_up}) to {self._transport.endpoint.url}",
        )
