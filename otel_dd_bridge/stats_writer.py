"""Sending client-computed stats: a flusher thread and one sink per destination.

:class:`StatsWriter` owns a daemon thread that, every ``interval`` seconds (10 s, the bucket
width), takes the **closed** buckets of a :class:`~otel_dd_bridge.stats.SpanConcentrator` and
hands them to a sink. ``force_flush()`` and ``shutdown()`` take **every** bucket, the open one
included, so nothing aggregated is lost at process exit (a bucket sent in two parts is summed by
the receiver: stats are additive). After ``fork()`` the child starts its own thread on first use
and a new runtime id, with an empty concentrator.

Sinks never raise and count what they could not deliver (``stats.payloads_sent``,
``stats.payloads_dropped``, ``stats.groups_sent``, ``stats.groups_dropped`` in
:class:`~otel_dd_bridge._telemetry.ExportCounters`; deliberately not ``dropped.*``, which counts
spans):

* :class:`AgentStatsSink`: ``POST /v0.6/stats``, one ``ClientStatsPayload`` per request
  (split at 4 000 groups), ``Content-Type: application/msgpack`` and the ``Datadog-Meta-*``
  headers; success is 2xx. Network errors, 408, 429 and 5xx are retried within the retry
  deadline (libdatadog sends once; a retry costs nothing here and saves a bucket). 404: the
  Agent has no ``/v0.6/stats`` (too old): stats are switched off for good, with one WARNING, and
  ``on_unsupported`` is called so the trace requests stop claiming client-computed stats.
* :class:`IntakeStatsSink`: ``POST /api/v0.2/stats`` on the intake, body = gzip of a msgpack
  ``StatsPayload`` (``ClientComputed: true``, at most 4 000 groups per body, ``SplitPayload``
  on pieces), ``Content-Type: application/msgpack``, ``Content-Encoding: gzip``; the API key
  travels in the transport's default headers and is never logged. 202 is the intake's answer
  (any 2xx is accepted); 401/403: one clear ERROR that the API key was rejected.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from otel_dd_bridge import _lifecycle
from otel_dd_bridge._telemetry import ExportCounters, RateLimitedLog
from otel_dd_bridge.config import ExporterConfig
from otel_dd_bridge.encoding.stats_msgpack import (
    CONTENT_TYPE,
    INTAKE_PATH,
    MAX_GROUPS_PER_PAYLOAD,
    STATS_PATH,
    encode_client_stats,
    encode_stats_payload,
    plan_intake_payloads,
    split_client_payload,
)
from otel_dd_bridge.model import TraceChunk
from otel_dd_bridge.retry import RetryPolicy, Verdict, send_with_retry
from otel_dd_bridge.stats import (
    ClientStatsPayload,
    SpanConcentrator,
    StatsLimits,
    stats_resource_obfuscator,
)
from otel_dd_bridge.transport import HttpTransport, SendResult
from otel_dd_bridge.version import __version__

logger = logging.getLogger(__name__)

__all__ = [
    "AgentStatsSink",
    "IntakeStatsSink",
    "StatsSink",
    "StatsWriter",
    "agent_stats_headers",
    "make_stats_writer",
    "stats_enabled",
]

GZIP_LEVEL = 1  # the Agent and libdatadog compress stats with gzip BestSpeed / fast
_META_HEADERS = (
    "Datadog-Meta-Lang", "Datadog-Meta-Lang-Version", "Datadog-Meta-Lang-Interpreter",
    "Datadog-Meta-Tracer-Version", "User-Agent",
)


def agent_stats_headers(trace_headers: Mapping[str, str]) -> dict[str, str]:
    """The ``/v0.6/stats`` headers: the ``Datadog-Meta-*`` ones of the trace requests."""
    out = {k: v for k, v in trace_headers.items() if k in _META_HEADERS}
    out["Content-Type"] = CONTENT_TYPE
    return out


class StatsSink(Protocol):
    """Delivers finished stats payloads; never raises."""

    def start(self, concentrator: SpanConcentrator) -> None:
        """Called once on the flusher thread before the first flush (discovery)."""
        ...

    def send(self, payloads: Sequence[ClientStatsPayload]) -> None: ...


class _SinkBase:
    def __init__(
        self,
        transport: HttpTransport,
        *,
        counters: ExportCounters,
        stop: threading.Event,
        retry_timeout: float,
        policy: RetryPolicy | None,
        clock: Callable[[], float],
    ) -> None:
        self._transport = transport
        self._counters = counters
        self._stop = stop
        self._retry_timeout = retry_timeout
        self._policy = policy or RetryPolicy()
        self._clock = clock
        self._log = RateLimitedLog(logger)

    def _post(self, path: str, body: bytes, headers: Mapping[str, str]) -> tuple[Verdict, SendResult, str]:
        outcome = send_with_retry(
            lambda: self._transport.send("POST", path, body, headers),
            deadline=self._clock() + self._retry_timeout,
            policy=self._policy,
            clock=self._clock,
            wait=self._stop.wait,
        )
        reason = outcome.classification.reason
        if outcome.gave_up:
            reason = f"{reason} ({outcome.gave_up})"
        return outcome.classification.verdict, outcome.result, reason

    def _sent(self, groups: int) -> None:
        self._counters.add("stats.payloads_sent", 1)
        self._counters.add("stats.groups_sent", groups)

    def _dropped(self, groups: int, key: str, msg: str, *args: object) -> None:
        self._counters.add("stats.payloads_dropped", 1)
        self._counters.add("stats.groups_dropped", groups)
        self._log.log(logging.WARNING, key, msg, *args)


class AgentStatsSink(_SinkBase):
    """``/v0.6/stats`` on the Datadog Agent (see the module docstring)."""

    def __init__(
        self,
        transport: HttpTransport,
        *,
        headers: Mapping[str, str],
        counters: ExportCounters,
        stop: threading.Event,
        retry_timeout: float = 10.0,
        on_unsupported: Callable[[], None] | None = None,
        obfuscation_version: int | None = None,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(transport, counters=counters, stop=stop, retry_timeout=retry_timeout,
                         policy=policy, clock=clock)
        self._headers = dict(headers)
        self._headers["Content-Type"] = CONTENT_TYPE
        if obfuscation_version is not None:
            self._headers["Datadog-Obfuscation-Version"] = str(obfuscation_version)
        self._on_unsupported = on_unsupported
        self.disabled = False

    def disable(self, why: str) -> None:
        """Stop sending (the Agent cannot take client stats); tell the exporter once."""
        if self.disabled:
            return
        self.disabled = True
        logger.warning("client-side stats switched off: %s; the Agent computes them instead", why)
        if self._on_unsupported is not None:
            try:
                self._on_unsupported()
            except Exception:  # noqa: BLE001
                logger.debug("on_unsupported callback failed", exc_info=True)

    def start(self, concentrator: SpanConcentrator) -> None:
        """Ask the Agent's ``/info`` (once, off the application's threads): no
        ``/v0.6/stats`` endpoint -> stats off; ``peer_tags`` and ``span_kinds_stats_computed``
        replace the defaults, as libdatadog does. An unreachable Agent changes nothing."""
        result = self._transport.send("GET", "/info", None, {})
        if result.status != 200:
            logger.debug("no /info from the Agent (%s); stats defaults kept",
                         result.error or result.status)
            return
        try:
            info = json.loads(result.body)
        except ValueError:
            return
        if not isinstance(info, dict):
            return
        endpoints = info.get("endpoints")
        if isinstance(endpoints, list) and STATS_PATH not in endpoints:
            self.disable(f"the Agent's /info does not list {STATS_PATH}")
            return
        peer_tags = info.get("peer_tags")
        if isinstance(peer_tags, list) and all(isinstance(t, str) for t in peer_tags):
            concentrator.set_peer_tag_keys(peer_tags)
        kinds = info.get("span_kinds_stats_computed")
        if isinstance(kinds, list) and kinds and all(isinstance(k, str) for k in kinds):
            concentrator.set_span_kinds(kinds)

    def send(self, payloads: Sequence[ClientStatsPayload]) -> None:
        for payload in payloads:
            for piece in split_client_payload(payload, MAX_GROUPS_PER_PAYLOAD):
                groups = piece.group_count()
                if self.disabled:
                    self._dropped(groups, "stats_disabled", "stats dropped: the Agent has no /v0.6/stats")
                    continue
                try:
                    body = encode_client_stats(piece)
                except Exception as exc:  # noqa: BLE001
                    self._dropped(groups, "stats_encoding", "stats payload not encodable: %s", exc)
                    continue
                verdict, result, reason = self._post(STATS_PATH, body, self._headers)
                if verdict is Verdict.SUCCESS:
                    self._sent(groups)
                    continue
                if result.status == 404:
                    self.disable(f"the Agent at {self._transport.endpoint.url} has no {STATS_PATH}")
                self._dropped(groups, "stats_rejected", "dropped a stats payload of %d groups: %s",
                              groups, reason)


class IntakeStatsSink(_SinkBase):
    """``/api/v0.2/stats`` on the Datadog intake (see the module docstring)."""

    def __init__(
        self,
        transport: HttpTransport,
        *,
        counters: ExportCounters,
        stop: threading.Event,
        retry_timeout: float = 10.0,
        default_env: str = "none",
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(transport, counters=counters, stop=stop, retry_timeout=retry_timeout,
                         policy=policy, clock=clock)
        # the Agent gives an env-less payload its DefaultEnv ("none"); no Agent here does it
        self._default_env = default_env
        self._headers = {"Content-Type": CONTENT_TYPE, "Content-Encoding": "gzip"}

    def start(self, concentrator: SpanConcentrator) -> None:
        """Nothing to discover: the intake takes the Agent's defaults."""

    def send(self, payloads: Sequence[ClientStatsPayload]) -> None:
        for p in payloads:
            if not p.env:
                p.env = self._default_env
        for body_payloads, split in plan_intake_payloads(payloads, MAX_GROUPS_PER_PAYLOAD):
            groups = sum(p.group_count() for p in body_payloads)
            try:
                body = gzip.compress(encode_stats_payload(body_payloads, split=split),
                                     compresslevel=GZIP_LEVEL)
            except Exception as exc:  # noqa: BLE001
                self._dropped(groups, "stats_encoding", "stats payload not encodable: %s", exc)
                continue
            verdict, result, reason = self._post(INTAKE_PATH, body, self._headers)
            if verdict is Verdict.SUCCESS:
                self._sent(groups)
                continue
            if result.status in (401, 403):
                self._counters.add("stats.payloads_dropped", 1)
                self._counters.add("stats.groups_dropped", groups)
                self._log.log(logging.ERROR, "stats_api_key",
                              "the Datadog intake rejected the API key (HTTP %d): stats dropped",
                              result.status)
                continue
            self._dropped(groups, "stats_rejected", "dropped a stats payload of %d groups: %s",
                          groups, reason)


class StatsWriter:
    """Flushes a concentrator to a sink every ``interval`` seconds on a daemon thread.

    Args:
        concentrator: where the spans are aggregated.
        sink: where payloads go.
        interval: seconds between two flushes of the closed buckets (the bucket width).
        service, env, version: payload metadata (``ClientStatsPayload.Service``; env/version
            only when the spans' resources carry none).
    """

    def __init__(
        self,
        concentrator: SpanConcentrator,
        sink: StatsSink,
        *,
        interval: float = 10.0,
        service: str | None = None,
        env: str | None = None,
        version: str | None = None,
    ) -> None:
        self.concentrator = concentrator
        self.sink = sink
        self._interval = interval
        self._service = service or ""
        self._env = env or ""
        self._version = version or ""
        self._sequence = 0
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._log = RateLimitedLog(logger)
        _lifecycle.on_fork_child(self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None  # the parent's thread does not exist here; started on next use
        self._sequence = 0

    @property
    def runtime_id(self) -> str:
        """The process's runtime id (:func:`otel_dd_bridge._lifecycle.runtime_id`), as on traces."""
        return _lifecycle.runtime_id()

    def ensure_started(self) -> None:
        """Start the flusher thread if it is not running (cheap; called on every export)."""
        t = self._thread
        if t is not None and t.is_alive() or self._closed:
            return
        with self._state_lock:
            if self._closed or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(
                target=self._run, name="otel-dd-bridge-stats", daemon=True
            )
            self._thread.start()

    def add_chunks(self, chunks: Sequence[TraceChunk]) -> None:
        """Aggregate translated chunks (starting the flusher on first use); never raises."""
        try:
            self.ensure_started()
            self.concentrator.add_chunks(chunks)
        except Exception:  # noqa: BLE001 - stats must never break an export
            self._log.log(logging.WARNING, "stats_add", "client stats: could not aggregate spans")
            logger.debug("stats aggregation failed", exc_info=True)

    def _run(self) -> None:
        try:
            self.sink.start(self.concentrator)
        except Exception:  # noqa: BLE001
            logger.debug("stats sink start failed", exc_info=True)
        while not self._wake.wait(self._interval):
            try:
                self.flush(force=False)
            except Exception:  # noqa: BLE001 - the thread must survive anything
                logger.debug("stats flush failed", exc_info=True)

    def flush(self, *, force: bool = False) -> int:
        """Flush (closed, or with ``force`` all) buckets to the sink; returns payloads sent."""
        with self._send_lock:
            payloads = self.concentrator.flush(force=force)
            if not payloads:
                return 0
            for p in payloads:
                self._sequence += 1
                p.sequence = self._sequence
                p.runtime_id = self.runtime_id
                p.tracer_version = __version__
                p.service = self._service
                if not p.env:
                    p.env = self._env
                if not p.version:
                    p.version = self._version
            self.sink.send(payloads)
            return len(payloads)

    def force_flush(self) -> bool:
        """Send everything aggregated so far, the open bucket included."""
        try:
            self.flush(force=True)
            return True
        except Exception:  # noqa: BLE001
            logger.debug("stats force_flush failed", exc_info=True)
            return False

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the thread (waiting up to ``timeout`` for a flush in flight) and send every
        bucket, the open one included. Idempotent."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            t = self._thread
        self._wake.set()
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        self.force_flush()


COMPUTED_STATS_HEADER = "Datadog-Client-Computed-Stats"


def stats_enabled(cfg: ExporterConfig) -> bool:
    """``compute_stats`` as resolved; unset means on in agentless mode, off in agent mode."""
    return cfg.compute_stats if cfg.compute_stats is not None else cfg.mode == "agentless"


def make_stats_writer(
    cfg: ExporterConfig,
    *,
    transport: HttpTransport,
    counters: ExportCounters,
    stop: threading.Event,
    trace_headers: dict[str, str] | None = None,
) -> StatsWriter | None:
    """The stats pipeline of an exporter, or None when stats are off.

    Agentless: spans arrive obfuscated, payloads go to the intake through the intake transport
    (which holds the API key). Agent mode: resources are obfuscated for grouping as the Agent
    would (:func:`~otel_dd_bridge.stats.stats_resource_obfuscator`), payloads go to
    ``/v0.6/stats``, and ``trace_headers`` (the dict the trace requests are built from) gets
    ``Datadog-Client-Computed-Stats: true``, removed again if the Agent turns out to have no
    stats endpoint (so it computes them itself and nothing is lost).
    """
    if not stats_enabled(cfg):
        return None
    limits = StatsLimits(
        max_groups=cfg.stats_max_groups, max_resources=cfg.stats_max_resources,
        max_http_endpoints=cfg.stats_max_http_endpoints, max_peer_tags=cfg.stats_max_peer_tags,
    )
    sink: StatsSink
    if cfg.mode == "agentless":
        concentrator = SpanConcentrator(limits=limits)
        sink = IntakeStatsSink(transport, counters=counters, stop=stop,
                               retry_timeout=cfg.retry_timeout)
    else:
        headers = trace_headers if trace_headers is not None else {}
        headers[COMPUTED_STATS_HEADER] = "true"
        concentrator = SpanConcentrator(limits=limits,
                                        resource_obfuscator=stats_resource_obfuscator())

        def unsupported() -> None:
            headers.pop(COMPUTED_STATS_HEADER, None)

        sink = AgentStatsSink(
            transport, headers=agent_stats_headers(headers), counters=counters, stop=stop,
            retry_timeout=cfg.retry_timeout, on_unsupported=unsupported,
        )
    return StatsWriter(concentrator, sink, service=cfg.service, env=cfg.env,
                       version=cfg.version)
