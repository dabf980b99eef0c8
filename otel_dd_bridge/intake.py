"""Agentless delivery: trace chunks straight to the Datadog intake, as a Datadog Agent sends them.

``POST <intake>/api/v0.2/traces`` where ``<intake>`` is ``https://trace.agent.<site>`` (or the
``intake_url`` override); body = gzip of one protobuf ``AgentPayload``
(:mod:`otel_dd_bridge.encoding.intake_protobuf`); headers ``DD-Api-Key``,
``Content-Type: application/x-protobuf``, ``Content-Encoding: gzip``,
``X-Datadog-Reported-Languages``, ``User-Agent: otel-dd-bridge/<version> (agentless)``
(wire.md §3.2).

Decisions, in order, for one batch (all within one deadline):

* only what an Agent would forward is sent: chunks whose priority is <= 0 (sampled out) are
  dropped and counted as ``sampled_out`` (DEBUG log only: this is sampling, not a failure),
  except spans kept by single-span sampling (metric ``_dd.span_sampling.mechanism == 8``),
  which go out in a chunk marked ``droppedTrace``. Client-side stats must have seen the chunks
  before :meth:`IntakeDelivery.deliver` (the exporter runs stats first);
* the *uncompressed* ``AgentPayload`` must fit ``intake_max_payload_size`` (default
  3 200 000 bytes, "the maximum allowed by the Datadog API" in the Agent's trace writer, which
  also applies it before compression); a bigger batch is halved by chunks until each part fits;
  one chunk that alone exceeds it is dropped (``payload_too_large``);
* each part is sent with :func:`~otel_dd_bridge.retry.send_with_retry`: network errors, 408,
  429 and 5xx are retried with full-jitter backoff (the Agent's sender retries network errors,
  408 and 5xx the same way);
* 413 -> the part is halved and each half sent; 401/403 -> the API key was rejected: one clear
  ERROR (rate-limited; the key itself is never logged), the spans dropped as ``rejected``;
  other 4xx -> dropped (``rejected``); retries exhausted -> ``retry_deadline`` / ``shutdown``.

The API key lives only in the transport's default headers; it is never logged, never put in a
repr and never sent anywhere but the intake URL.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Callable, Sequence

import httpx

from otel_dd_bridge._telemetry import ExportCounters, RateLimitedLog
from otel_dd_bridge.config import ExporterConfig, parse_agent_url
from otel_dd_bridge.delivery import ChunkSender
from otel_dd_bridge.encoding.intake_protobuf import IntakeEncoder, chunk_priority, chunk_root
from otel_dd_bridge.model import TraceChunk
from otel_dd_bridge.retry import RetryPolicy, Verdict, send_with_retry
from otel_dd_bridge.transport import HttpTransport
from otel_dd_bridge.version import __version__

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_INTAKE_MAX_PAYLOAD",
    "GZIP_LEVEL",
    "IntakeDelivery",
    "intake_headers",
    "make_intake_delivery",
    "select_forwarded",
]

DEFAULT_INTAKE_MAX_PAYLOAD = 3_200_000
GZIP_LEVEL = 1  # the Agent's trace writer uses gzip.BestSpeed: ~2 us/span; level 6 saves 20%
_SINGLE_SPAN_MECHANISM = 8


def _transport_headers(api_key: str) -> dict[str, str]:
    """Default headers of the intake transport, shared by traces and stats (the key included:
    keep it out of logs). Content headers are set per request."""
    return {"DD-Api-Key": api_key, "User-Agent": f"otel-dd-bridge/{__version__} (agentless)"}


def intake_headers(api_key: str) -> dict[str, str]:
    """Every constant header of a trace request (``otel-dd-bridge check`` sends its probe with
    them)."""
    return {
        **_transport_headers(api_key),
        "Content-Type": IntakeEncoder.content_type,
        "Content-Encoding": "gzip",
    }


def _span_count(chunks: Sequence[TraceChunk]) -> int:
    return sum(len(c.spans) for c in chunks)


def select_forwarded(chunks: Sequence[TraceChunk]) -> tuple[list[TraceChunk], int]:
    """The chunks an Agent would forward, and the number of spans it would not.

    Priority > 0 or undecided (-128, no sampler ran): forwarded as is. Priority <= 0: only
    the single-span-sampled spans, in a copy of the chunk marked ``dropped_trace``.
    """
    out: list[TraceChunk] = []
    dropped = 0
    for c in chunks:
        if not c.spans:
            continue
        prio = chunk_priority(c, chunk_root(c.spans))
        if prio > 0 or prio == -128:
            out.append(c)
            continue
        kept = [
            s for s in c.spans
            if s.metrics.get("_dd.span_sampling.mechanism") == _SINGLE_SPAN_MECHANISM
        ]
        dropped += len(c.spans) - len(kept)
        if kept:
            out.append(TraceChunk(
                spans=kept, priority=prio, origin=c.origin, tags=dict(c.tags),
                dropped_trace=True, payload=c.payload,
            ))
    return out, dropped


class IntakeDelivery(ChunkSender):
    """Sends chunks to the Datadog trace intake; never raises.

    Same contract as :class:`~otel_dd_bridge.delivery.AgentDelivery`: ``deliver(chunks)``
    returns True when every span that was to be sent was accepted (sampled-out spans are not
    a failure).
    """

    def __init__(
        self,
        transport: HttpTransport,
        *,
        max_payload_size: int,
        retry_timeout: float,
        counters: ExportCounters,
        stop: threading.Event,
        site: str,
        env: str | None = None,
        runtime_id: str = "",
        redact: str | None = None,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._encoder = IntakeEncoder(env=env, runtime_id=runtime_id)
        self._max = max_payload_size
        self._retry_timeout = retry_timeout
        self._counters = counters
        self._stop = stop
        self._site = site
        self._policy = policy or RetryPolicy()
        self._clock = clock
        self._log = RateLimitedLog(logger)
        self._redact = redact  # scrubbed from response bodies before they are logged

    def __repr__(self) -> str:
        return f"IntakeDelivery(url={self._transport.endpoint.url!r})"

    @property
    def api_version(self) -> str:
        return self._encoder.api_version

    def deliver(self, chunks: Sequence[TraceChunk]) -> bool:
        """Deliver the chunks an Agent would forward; True when all of them were accepted."""
        if not chunks:
            return True
        forwarded, sampled_out = select_forwarded(chunks)
        if sampled_out:
            self._counters.drop("sampled_out", sampled_out)
            logger.debug("not sending %d sampled-out spans (priority <= 0)", sampled_out)
        if not forwarded:
            return True
        return self._deliver(forwarded, self._clock() + self._retry_timeout)

    def _deliver(self, chunks: list[TraceChunk], deadline: float) -> bool:
        raw = self._encode(self._encoder.encode, chunks)
        if raw is None:
            return False
        if len(raw) > self._max:
            if len(chunks) > 1:
                return self._split(chunks, deadline)
            return self._drop(
                "payload_too_large", chunks,
                f"one trace encodes to {len(raw)} bytes > intake_max_payload_size {self._max}",
            )
        body = gzip.compress(raw, compresslevel=GZIP_LEVEL)
        headers = {
            "Content-Type": self._encoder.content_type,
            "Content-Encoding": "gzip",
            "X-Datadog-Reported-Languages": self._encoder.languages(chunks),
        }
        path = self._encoder.path
        n = _span_count(chunks)
        outcome = send_with_retry(
            lambda: self._transport.send("POST", path, body, headers),
            deadline=deadline,
            policy=self._policy,
            api_version=self._encoder.api_version,
            clock=self._clock,
            wait=self._stop.wait,
            on_retry=lambda _c: self._counters.add("retried", n),
        )
        verdict = outcome.classification.verdict
        status = outcome.result.status
        if verdict is Verdict.SUCCESS:
            self._counters.add("exported", n)
            return True
        if verdict is Verdict.SPLIT:
            if len(chunks) > 1:
                return self._split(chunks, deadline)
            return self._drop("payload_too_large", chunks, "the intake answered 413")
        if status in (401, 403):
            self._log.log(
                logging.ERROR, "api_key_rejected",
                "the Datadog intake rejected the API key (HTTP %d from %s): check DD_API_KEY / "
                "api_key and that it belongs to site %s; %d spans dropped",
                status, self._transport.endpoint.url, self._site, n,
            )
            self._counters.drop("rejected", n)
            return False
        if verdict is Verdict.DROP or verdict is Verdict.DOWNGRADE:
            hint = " (check DD_SITE / intake_url)" if status == 404 else ""
            body_text = outcome.result.body[:200].decode("utf-8", "replace")
            if self._redact:
                body_text = body_text.replace(self._redact, "<redacted>")
            return self._drop(
                "rejected", chunks,
                f"{outcome.classification.reason} from {self._transport.endpoint.url}{hint} "
                f"{body_text}".strip(),
            )
        reason = "shutdown" if outcome.gave_up == "shutdown" else "retry_deadline"
        return self._drop(
            reason, chunks,
            f"{outcome.classification.reason} after {outcome.attempts} attempts "
            f"({outcome.gave_up}) to {self._transport.endpoint.url}",
        )


def make_intake_delivery(
    cfg: ExporterConfig,
    *,
    counters: ExportCounters,
    stop: threading.Event,
    _transport: httpx.BaseTransport | None = None,
) -> tuple[HttpTransport, IntakeDelivery]:
    """The transport (TLS verified, the API key in its default headers) and the delivery of
    agentless mode, from a resolved configuration with ``mode == "agentless"``."""
    if not cfg.api_key:
        raise ValueError("agentless mode needs an API key")
    transport = HttpTransport(
        parse_agent_url(cfg.intake_url), timeout=cfg.timeout,
        headers=_transport_headers(cfg.api_key), verify=True, _transport=_transport,
    )
    delivery = IntakeDelivery(
        transport,
        max_payload_size=cfg.intake_max_payload_size,
        retry_timeout=cfg.retry_timeout,
        counters=counters,
        stop=stop,
        site=cfg.site,
        env=cfg.env,
        redact=cfg.api_key,
    )
    return transport, delivery
