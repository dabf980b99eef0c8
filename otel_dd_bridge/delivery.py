"""Delivery of trace chunks to the Agent: encode, size guard, send with retry, split, downgrade.

Decisions, in order, for one batch (all within one deadline):

* the body is encoded; a batch over ``max_payload_size`` is halved by chunks until each part
  fits; one chunk that alone exceeds it is split into parts of the same trace (a partial
  flush); one span that alone exceeds it is dropped (reason ``payload_too_large``);
* a batch that fails to encode (lone surrogates, integers out of range) is repaired by
  :func:`sanitize_chunks` and encoded again; a second failure drops it (``encoding_error``);
* each part is sent with :func:`~otel_dd_bridge.retry.send_with_retry`;
* 413 -> the part is halved and each half sent (a single chunk: dropped, ``payload_too_large``);
* 404/415 on v0.5 -> the Agent has no v0.5: switch to v0.4 for good and resend the same chunks;
* any other final 4xx -> dropped (``rejected``); retries exhausted -> dropped
  (``retry_deadline``), or ``shutdown`` when ``shutdown()`` interrupted the wait.

Every dropped span is counted by reason and logged (rate-limited).
"""

from __future__ import annotations

import dataclasses
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

__all__ = ["AgentDelivery", "ChunkSender", "sanitize_chunks", "split_chunk"]


def _span_count(chunks: Sequence[TraceChunk]) -> int:
    return sum(len(c.spans) for c in chunks)


_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def _int64(v: int) -> int:
    return min(max(v, _I64_MIN), _I64_MAX)


def _metric(v: float | int) -> float | int:
    if isinstance(v, int) and not _I64_MIN <= v <= 2**64 - 1:
        return float(v)
    return v


def sanitize_chunks(chunks: Sequence[TraceChunk]) -> None:
    """Make chunks encodable, in place: strings that are not valid UTF-8 (lone surrogates) are
    repaired; ``start`` is clamped to int64, a ``duration`` outside ``[0, int64]`` becomes 0
    (the Agent's rule for an invalid duration); metric integers beyond 64 bits become floats.

    Runs only after an encoding failure (not on the hot path)."""
    for c in chunks:
        for s in c.spans:
            s.service, s.name = safe_str(s.service), safe_str(s.name)
            s.resource, s.type = safe_str(s.resource), safe_str(s.type)
            s.meta = {safe_str(k): safe_str(v) for k, v in s.meta.items()}
            s.metrics = {safe_str(k): _metric(v) for k, v in s.metrics.items()}
            s.start = _int64(s.start)
            if not 0 <= s.duration <= _I64_MAX:
                s.duration = 0
            s.trace_id &= _U64
            s.span_id &= _U64
            s.parent_id &= _U64


_U64 = 2**64 - 1
# Chunk-level keys the first span of every chunk carries (the Agent reads them per chunk).
_CHUNK_META_PREFIXES = ("_dd.p.", "_dd.origin")
_CHUNK_METRICS = ("_sampling_priority_v1",)


def split_chunk(chunk: TraceChunk) -> tuple[TraceChunk, TraceChunk]:
    """Split one trace chunk into two chunks of the same trace (a partial flush, which the
    Agent accepts: chunks of one trace may arrive in different payloads). The second part's
    first span gets the chunk-level keys (priority, decision maker, ``_dd.p.tid``, origin)."""
    mid = len(chunk.spans) // 2
    a, b = chunk.spans[:mid], chunk.spans[mid:]
    head, first = chunk.spans[0], b[0]
    for k, v in head.meta.items():
        if k.startswith(_CHUNK_META_PREFIXES) and k not in first.meta:
            first.meta[k] = v
    for k in _CHUNK_METRICS:
        if k in head.metrics and k not in first.metrics:
            first.metrics[k] = head.metrics[k]
    return (
        dataclasses.replace(chunk, spans=a, tags=dict(chunk.tags)),
        dataclasses.replace(chunk, spans=b, tags=dict(chunk.tags)),
    )


class ChunkSender:
    """What the Agent and intake deliveries share: drop accounting, halving a batch, and
    encoding with one repair (:func:`sanitize_chunks`) before giving up on a batch.

    Subclasses set ``_counters`` and ``_log`` and implement ``_deliver(chunks, deadline)``."""

    _counters: ExportCounters
    _log: RateLimitedLog

    def _deliver(self, chunks: list[TraceChunk], deadline: float) -> bool:
        raise NotImplementedError

    def _drop(self, reason: str, chunks: Sequence[TraceChunk], detail: str,
              level: int = logging.WARNING) -> bool:
        n = _span_count(chunks)
        self._counters.drop(reason, n)
        self._log.log(level, reason, "dropped %d spans (%s): %s", n, reason, detail)
        return False

    def _split(self, chunks: list[TraceChunk], deadline: float) -> bool:
        mid = len(chunks) // 2
        ok_a = self._deliver(chunks[:mid], deadline)
        ok_b = self._deliver(chunks[mid:], deadline)
        return ok_a and ok_b

    def _encode(self, encode: Callable[[list[TraceChunk]], bytes],
                chunks: list[TraceChunk]) -> bytes | None:
        try:
            return encode(chunks)
        except Exception:  # noqa: BLE001 - lone surrogates, out-of-range integers: repair, retry
            sanitize_chunks(chunks)
        try:
            return encode(chunks)
        except Exception as exc:  # noqa: BLE001
            self._drop("encoding_error", chunks, f"{type(exc).__name__}: {exc}")
            return None


class AgentDelivery(ChunkSender):
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

    def _deliver(self, chunks: list[TraceChunk], deadline: float) -> bool:
        encoder = self._encoder
        body = self._encode(encoder.encode, chunks)
        if body is None:
            return False
        if len(body) > self._max:
            if len(chunks) > 1:
                return self._split(chunks, deadline)
            if len(chunks[0].spans) > 1:
                return self._split(list(split_chunk(chunks[0])), deadline)
            return self._drop(
                "payload_too_large", chunks,
                f"one span encodes to {len(body)} bytes > max_payload_size {self._max}",
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
