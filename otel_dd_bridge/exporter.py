"""``DatadogSpanExporter``: the composition root.

config -> translate -> encode + size guard -> send with retry (see :mod:`.delivery`).

Contract inside the OTel SDK: ``export()`` never raises; it returns ``SUCCESS`` only when the
Agent accepted every span, else ``FAILURE`` (spans are never reported delivered for merely
being buffered). ``BatchSpanProcessor`` calls it from one worker thread, ``SimpleSpanProcessor``
from any thread: the exporter keeps no per-batch shared state. ``shutdown()`` is idempotent,
interrupts a retry backoff at once and waits at most ``shutdown_timeout`` for an export in
flight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_dd_bridge import _lifecycle
from otel_dd_bridge._telemetry import ExportCounters, RateLimitedLog, register_otel_metrics
from otel_dd_bridge.config import ExporterConfig, resolve_config
from otel_dd_bridge.debugview import DEBUG_LOGGER, log_chunks
from otel_dd_bridge.delivery import AgentDelivery
from otel_dd_bridge.intake import IntakeDelivery, make_intake_delivery
from otel_dd_bridge.obfuscate import Obfuscator, obfuscate_chunks
from otel_dd_bridge.sampling import GLOBAL_RATES, RateByService
from otel_dd_bridge.stats import SpanConcentrator
from otel_dd_bridge.stats_writer import StatsWriter, make_stats_writer, stats_enabled
from otel_dd_bridge.translate import Hook, TranslateOptions, _Cache, translate_spans_with_stats
from otel_dd_bridge.transport import HttpTransport, agent_headers

logger = logging.getLogger(__name__)

__all__ = ["DatadogSpanExporter"]


def translate_options(
    cfg: ExporterConfig, *, name_hook: Hook | None = None, resource_hook: Hook | None = None,
    service_hook: Hook | None = None,
) -> TranslateOptions:
    """The translation options a resolved configuration asks for (also the file recorder's)."""
    return TranslateOptions(
        service=cfg.service, env=cfg.env, version=cfg.version, tags=cfg.tags,
        top_level=cfg.top_level, error_tags_from_events=cfg.error_tags_from_events,
        span_name_as_resource_name=cfg.span_name_as_resource_name,
        span_name_remappings=cfg.span_name_remappings,
        sampling_percentage=cfg.sampling_percentage,
        name_hook=name_hook, resource_hook=resource_hook, service_hook=service_hook,
    )


class DatadogSpanExporter(SpanExporter):
    """An OpenTelemetry SDK span exporter that sends Datadog-shaped spans to a Datadog Agent.

    Every keyword is optional; each unset one is read from the environment (``DD_*``, then
    ``OTEL_*``), then defaults. See the README's configuration table.

    Args:
        agent_url: ``http://host:port``, ``https://...`` or ``unix:///path/apm.socket``.
        service: service name (overrides the resource's ``service.name``).
        env: environment. version: application version. tags: global tags.
        timeout: seconds per HTTP request. api_version: ``"v0.4"`` or ``"v0.5"``.
        name_hook, resource_hook, service_hook: ``(otel_span, dd_span) -> str | None``
            callables that override the computed operation name, resource or service.
        meter_provider: expose the counters of :meth:`stats` as OTel observable counters
            through this ``MeterProvider`` (setting ``metrics`` uses the global one).

    Raises:
        ValueError: an explicit argument is malformed (the message names it).
    """

    def __init__(
        self,
        *,
        agent_url: str | None = None,
        service: str | None = None,
        env: str | None = None,
        version: str | None = None,
        tags: Mapping[str, str] | str | None = None,
        timeout: float | None = None,
        api_version: str | None = None,
        name_hook: Hook | None = None,
        resource_hook: Hook | None = None,
        service_hook: Hook | None = None,
        _environ: Mapping[str, str] | None = None,
        _transport: httpx.BaseTransport | None = None,
        meter_provider: Any = None,
        **options: Any,
    ) -> None:
        explicit = dict(
            agent_url=agent_url, service=service, env=env, version=version, tags=tags,
            timeout=timeout, api_version=api_version, **options,
        )
        self.config: ExporterConfig = resolve_config(_environ, **explicit)
        cfg = self.config
        self._options = translate_options(
            cfg, name_hook=name_hook, resource_hook=resource_hook, service_hook=service_hook
        )
        self._cache = _Cache(self._options.max_cached_resources)
        self._obfuscator = Obfuscator(cache_max_bytes=cfg.obfuscation_cache_max_bytes,
                                      all_statements=cfg.obfuscate_all_statements)
        if cfg.debug and DEBUG_LOGGER.level == logging.NOTSET:
            DEBUG_LOGGER.setLevel(logging.DEBUG)  # the user asked for it; handlers stay theirs
        self._cache_lock = threading.Lock()
        self.counters = ExportCounters(summary_interval=cfg.drop_summary_interval)
        self.rate_by_service: RateByService = GLOBAL_RATES
        self._stop = _lifecycle.StopEvent()  # shutdown() sets it; an exit deadline implies it
        self._inflight = 0
        self._inflight_cv = threading.Condition()
        self._log = RateLimitedLog(logger)
        self._delivery: AgentDelivery | IntakeDelivery
        self._trace_headers: dict[str, str] | None = None  # agent mode; stats may edit it
        if cfg.mode == "agentless":
            self._transport, self._delivery = make_intake_delivery(
                cfg, counters=self.counters, stop=self._stop, _transport=_transport
            )
        else:
            self._transport = HttpTransport(cfg.agent, timeout=cfg.timeout, _transport=_transport)
            self._trace_headers = agent_headers(computed_stats=stats_enabled(cfg))
            self._delivery = AgentDelivery(
                self._transport,
                api_version=cfg.api_version,
                max_payload_size=cfg.max_payload_size,
                retry_timeout=cfg.retry_timeout,
                counters=self.counters,
                rates=self.rate_by_service,
                base_headers=self._trace_headers,
                stop=self._stop,
            )
        # Client-side stats (None when off): see otel_dd_bridge.stats / .stats_writer.
        self.stats_writer: StatsWriter | None = make_stats_writer(
            cfg, transport=self._transport, counters=self.counters, stop=self._stop,
            trace_headers=self._trace_headers,
        )
        self._instruments: list[Any] = []
        if cfg.metrics or meter_provider is not None:
            try:
                self._instruments = register_otel_metrics(self.counters, meter_provider)
            except Exception:  # noqa: BLE001 - self-observability must not break the exporter
                logger.warning("could not register otel_dd_bridge metrics", exc_info=True)
        self._exit_hooked = False
        _lifecycle.on_fork_child(self._after_fork_in_child)
        _lifecycle.on_exit(self._at_exit)  # again at the first export (see _export)

    def _after_fork_in_child(self) -> None:
        """In a forked child: fresh locks (a parent thread may have held one), no export in
        flight. The transport and counters reset themselves (see :mod:`._lifecycle`)."""
        self._cache_lock = threading.Lock()
        self._inflight = 0
        self._inflight_cv = threading.Condition()
        self._stop.after_fork_in_child()
        self._exit_hooked = False

    def _at_exit(self) -> None:
        """Interpreter exit: retries of the final flush end within ``shutdown_timeout``."""
        self._stop.set_deadline(time.monotonic() + self.config.shutdown_timeout)

    def __repr__(self) -> str:
        return f"DatadogSpanExporter({self.config!r})"

    @property
    def api_version(self) -> str:
        """The Agent API in use (v0.5 falls back to v0.4 on an Agent without it)."""
        return self._delivery.api_version

    @property
    def stats_concentrator(self) -> SpanConcentrator | None:
        """The client-side stats concentrator, or None when ``compute_stats`` is off."""
        return self.stats_writer.concentrator if self.stats_writer is not None else None

    def stats(self) -> dict[str, int]:
        """Counters: ``received``, ``exported``, ``retried``, ``dropped.<reason>``."""
        return self.counters.snapshot()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Translate and send a batch; never raises."""
        try:
            return self._export(spans)
        except Exception:  # noqa: BLE001 - the host application must never see it
            self.counters.drop("internal_error", len(spans))
            logger.debug("export failed", exc_info=True)
            self._log.log(logging.ERROR, "export", "export failed with an internal error")
            return SpanExportResult.FAILURE

    def _export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        n = len(spans)
        if not self._exit_hooked:  # re-registered at first use: after the TracerProvider's atexit
            self._exit_hooked = True
            _lifecycle.on_exit(self._at_exit)
        if self._stop.deadline is None and not threading.main_thread().is_alive():
            self._at_exit()  # the interpreter is exiting (main thread done), whatever the order
        self.counters.add("received", n)
        if self._stop.is_set() or self._stop.expired():
            self.counters.drop("shutdown", n)
            self._log.log(logging.WARNING, "after_shutdown", "export() after shutdown: %d spans dropped", n)
            return SpanExportResult.FAILURE
        with self._inflight_cv:
            self._inflight += 1
        try:
            with self._cache_lock:  # the identity cache is not thread-safe
                result = translate_spans_with_stats(spans, self._options, _cache=self._cache)
            if result.dropped:
                self.counters.drop("invalid_span", result.dropped)
                self._log.log(
                    logging.WARNING, "invalid_span",
                    "dropped %d spans that could not be translated (zero ids or broken data)",
                    result.dropped,
                )
            if self.config.mode == "agentless":
                # No Agent will obfuscate: translate -> obfuscate -> stats -> (IntakeDelivery:)
                # drop sampled-out -> intake.
                obfuscate_chunks(result.chunks, self._obfuscator)
            if self.config.debug:
                log_chunks(result.chunks)
            if self.stats_writer is not None:  # every chunk, before sampled-out ones are dropped
                self.stats_writer.add_chunks(result.chunks)
            ok = self._delivery.deliver(result.chunks)
            return SpanExportResult.SUCCESS if ok and not result.dropped else SpanExportResult.FAILURE
        finally:
            with self._inflight_cv:
                self._inflight -= 1
                self._inflight_cv.notify_all()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Spans are not buffered here (the span processor buffers them); client stats are:
        every bucket, the open one included, is sent now."""
        if self.stats_writer is not None:
            return self.stats_writer.force_flush()
        return True

    def shutdown(self) -> None:
        """Stop: interrupt retries, wait up to ``shutdown_timeout`` for exports, close. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        with self._inflight_cv:
            self._inflight_cv.wait_for(lambda: self._inflight == 0, self.config.shutdown_timeout)
        if self.stats_writer is not None:  # all buckets, the open one too: nothing lost at exit
            self.stats_writer.shutdown(self.config.shutdown_timeout)
        self._transport.close()
        self.counters.maybe_log_summary(force=True)
