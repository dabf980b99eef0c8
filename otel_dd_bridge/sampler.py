"""``DatadogSampler``: Datadog's head-sampling decision inside the OpenTelemetry SDK.

Order of decisions for a span:

1. **A parent exists** (local or remote): its decision is kept (``sampled`` flag and trace
   state), so one trace carries one decision across services.
2. **A root span matching a sampling rule** (``DD_TRACE_SAMPLING_RULES``: a JSON list of
   ``{"sample_rate": r, "service": glob, "name": glob, "resource": glob, "tags": {k: glob}}``,
   ``*`` and ``?`` wildcards, first match wins): kept with probability ``r``
   (priority 2, USER_KEEP, else -1, USER_REJECT), then throttled by the rate limiter
   (``DD_TRACE_RATE_LIMIT`` traces per second, default 100: over it, -1). Decision maker ``-3``;
   ``_dd.rule_psr`` and ``_dd.limit_psr`` recorded. ``name`` and ``resource`` are matched against
   the Datadog operation name and resource the span will get (computed from its start
   attributes with the translation rules), so rules written for Datadog's tracers work as is.
3. **Otherwise the Agent's rate** for ``service:<svc>,env:<env>`` from the exporter's latest
   ``rate_by_service`` answer (priority 1, AUTO_KEEP, else 0); decision maker ``-1`` and
   ``_dd.agent_psr``. Before any answer: rate 1, decision maker ``-0``.

The keep test is Datadog's deterministic Knuth sampling on the low 64 bits of the trace id:
keep iff ``(low64 * 1111111111111111111) mod 2**64 <= rate * 2**64``, so every service (ours or
Datadog's tracers) reaches the same verdict for a trace.

The priority and decision maker go into the root span's W3C ``tracestate`` ``dd=`` member
(``s:``/``t.dm:``), which the SDK copies to every child span and translation turns into
``_sampling_priority_v1`` and ``_dd.p.dm``. Dropped spans (priority <= 0) are not recorded, as
with any OTel sampler.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState, get_current_span
from opentelemetry.util.types import Attributes

from otel_dd_bridge._ddstate import DDState, format_dd_member
from otel_dd_bridge.config import resolve_config
from otel_dd_bridge.sampling import GLOBAL_RATES, RateByService

logger = logging.getLogger(__name__)

__all__ = ["DatadogSampler", "SamplingRule", "datadog_sampler_factory", "parse_sampling_rules"]

_KNUTH = 1111111111111111111
_U64 = (1 << 64) - 1


def knuth_keep(trace_id: int, rate: float) -> bool:
    """Datadog's deterministic sampling test on the low 64 bits of a trace id."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    return ((trace_id & _U64) * _KNUTH) & _U64 <= rate * 18446744073709551616.0


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern),
        re.DOTALL,
    )


@dataclass(frozen=True, slots=True)
class SamplingRule:
    """One ``DD_TRACE_SAMPLING_RULES`` entry (globs are case-sensitive, as in ddtrace)."""

    sample_rate: float
    service: re.Pattern[str] | None = None
    name: re.Pattern[str] | None = None
    resource: re.Pattern[str] | None = None
    tags: Mapping[str, re.Pattern[str]] = field(default_factory=dict)

    def matches(self, service: str, name: str, resource: str, attrs: Mapping[str, Any]) -> bool:
        if self.service and not self.service.fullmatch(service):
            return False
        if self.name and not self.name.fullmatch(name):
            return False
        if self.resource and not self.resource.fullmatch(resource):
            return False
        for key, pat in self.tags.items():
            if key not in attrs or not pat.fullmatch(str(attrs[key])):
                return False
        return True


def parse_sampling_rules(value: str | Sequence[Mapping[str, Any]]) -> list[SamplingRule]:
    """Parse rules from JSON text or a list of dicts.

    Raises:
        ValueError: not a list of objects with a ``sample_rate`` between 0 and 1.
    """
    doc = json.loads(value) if isinstance(value, str) else value
    if not isinstance(doc, list):
        raise ValueError("sampling rules must be a JSON list")
    rules = []
    for i, item in enumerate(doc):
        if not isinstance(item, Mapping):
            raise ValueError(f"sampling rule {i} is not an object")
        rate = item.get("sample_rate")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError(f"sampling rule {i}: sample_rate must be a number in [0, 1]")
        tags = item.get("tags") or {}
        if not isinstance(tags, Mapping):
            raise ValueError(f"sampling rule {i}: tags must be an object")
        rules.append(SamplingRule(
            sample_rate=float(rate),
            service=_glob(str(item["service"])) if item.get("service") is not None else None,
            name=_glob(str(item["name"])) if item.get("name") is not None else None,
            resource=_glob(str(item["resource"])) if item.get("resource") is not None else None,
            tags={str(k): _glob(str(v)) for k, v in tags.items()},
        ))
    return rules


class _RateLimiter:
    """Token bucket of ``rate`` per second; reports its effective rate over the last second."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self._clock = clock
        self._tokens = rate
        self._last = clock()
        self._lock = threading.Lock()
        self._window = int(self._last)
        self._seen = 0
        self._allowed = 0

    def allow(self) -> tuple[bool, float]:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if int(now) != self._window:
                self._window, self._seen, self._allowed = int(now), 0, 0
            self._seen += 1
            ok = self._tokens >= 1.0
            if ok:
                self._tokens -= 1.0
                self._allowed += 1
            return ok, self._allowed / self._seen


class DatadogSampler(Sampler):
    """Parent-based sampler with Datadog rules, rate limit and Agent rate feedback.

    Args:
        service: the service rules and Agent rates are keyed on (default: resolved config).
        env: the environment of the Agent-rate key.
        rules: ``SamplingRule`` list or ``DD_TRACE_SAMPLING_RULES``-style JSON.
        rate_limit: traces per second allowed through matching rules.
        rates: where Agent rates are read (default: the store every exporter updates).
    """

    def __init__(
        self,
        *,
        service: str | None = None,
        env: str | None = None,
        rules: Sequence[SamplingRule] | str | None = None,
        rate_limit: float | None = None,
        rates: RateByService | None = None,
        _environ: Mapping[str, str] | None = None,
        _clock: Callable[[], float] = time.monotonic,
    ) -> None:
        cfg = resolve_config(_environ, service=service, env=env, sampling_rules=rules,
                             rate_limit=rate_limit)
        self.service = cfg.service or ""
        self.env = cfg.env or ""
        self.rules: list[SamplingRule] = list(cfg.sampling_rules)
        self._limiter = _RateLimiter(cfg.rate_limit, _clock)
        self._rates = rates if rates is not None else GLOBAL_RATES

    def get_description(self) -> str:
        return f"DatadogSampler(rules={len(self.rules)}, rate_limit={self._limiter.rate})"

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = get_current_span(parent_context).get_span_context()
        if parent.is_valid:
            decision = Decision.RECORD_AND_SAMPLE if parent.trace_flags.sampled else Decision.DROP
            return SamplingResult(decision, None, parent.trace_state)
        attrs: Mapping[str, Any] = attributes or {}
        record: dict[str, float] = {}
        rule = self._match(name, kind or SpanKind.INTERNAL, attrs)
        if rule is not None:
            keep = knuth_keep(trace_id, rule.sample_rate)
            record["_dd.rule_psr"] = rule.sample_rate
            if keep:
                keep, limit_rate = self._limiter.allow()
                record["_dd.limit_psr"] = limit_rate
            priority, dm = (2 if keep else -1), "-3"
        else:
            rate = self._rates.rate(self.service, self.env)
            if rate is None:
                keep, priority, dm = True, 1, "-0"
            else:
                keep = knuth_keep(trace_id, rate)
                record["_dd.agent_psr"] = rate
                priority, dm = (1 if keep else 0), "-1"
        state = DDState(priority=priority, tags={"_dd.p.dm": dm} if keep else {})
        ts = trace_state or TraceState()
        if "dd" in ts:
            ts = ts.delete("dd")
        ts = ts.add("dd", format_dd_member(state))
        decision = Decision.RECORD_AND_SAMPLE if keep else Decision.DROP
        return SamplingResult(decision, record if keep else None, ts)

    def _match(self, name: str, kind: SpanKind, attrs: Mapping[str, Any]) -> SamplingRule | None:
        if not self.rules:
            return None
        from otel_dd_bridge.translate import _norm_name, _operation_name_v2, _resource_v2

        service = attrs.get("service.name")
        svc = service if isinstance(service, str) and service else self.service
        op = _norm_name(_operation_name_v2(kind, attrs, {}))
        resource = _resource_v2(_Named(name), kind, attrs, {})  # type: ignore[arg-type]
        for rule in self.rules:
            if rule.matches(svc, op, resource, attrs):
                return rule
        return None


class _Named:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def datadog_sampler_factory(arg: str | None = None) -> DatadogSampler:
    """Entry point ``opentelemetry_traces_sampler: datadog`` (``OTEL_TRACES_SAMPLER=datadog``).

    ``OTEL_TRACES_SAMPLER_ARG``, when given, is ignored: configure with ``DD_TRACE_*``.
    """
    return DatadogSampler()
