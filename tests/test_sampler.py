"""DatadogSampler: parent decision, rules, rate limit, Agent rates, Knuth determinism."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from otel_dd_bridge import TranslateOptions, translate_spans
from otel_dd_bridge._ddstate import parse_dd_member
from otel_dd_bridge.sampler import DatadogSampler, knuth_keep, parse_sampling_rules
from otel_dd_bridge.sampling import RateByService


def test_knuth_vectors() -> None:
    # translation.md TV15: at 50%, trace 123 is kept and 1237892138897 dropped
    assert knuth_keep(123, 0.5) and not knuth_keep(1237892138897, 0.5)
    assert knuth_keep(5, 1.0) and not knuth_keep(5, 0.0)
    assert knuth_keep((7 << 64) | 123, 0.5)  # only the low 64 bits count


def _dd(result) -> tuple[int | None, str | None]:
    st = parse_dd_member(result.trace_state.get("dd"))
    return st.priority, st.tags.get("_dd.p.dm")


def test_no_rules_no_rates_keeps_with_default_mechanism() -> None:
    s = DatadogSampler(service="svc", rates=RateByService(), _environ={})
    r = s.should_sample(None, 123, "op")
    assert r.decision is Decision.RECORD_AND_SAMPLE and _dd(r) == (1, "-0")


def test_agent_rates_are_applied() -> None:
    rates = RateByService()
    rates.update_from_body(b'{"rate_by_service":{"service:svc,env:prod":0.5,"service:,env:":0}}')
    s = DatadogSampler(service="svc", env="prod", rates=rates, _environ={})
    keep = s.should_sample(None, 123, "op")
    drop = s.should_sample(None, 1237892138897, "op")
    assert keep.decision is Decision.RECORD_AND_SAMPLE and _dd(keep) == (1, "-1")
    assert keep.attributes["_dd.agent_psr"] == 0.5
    assert drop.decision is Decision.DROP
    other = DatadogSampler(service="other", rates=rates, _environ={})
    assert other.should_sample(None, 123, "op").decision is Decision.DROP  # default rate 0


def test_parent_decision_is_kept() -> None:
    s = DatadogSampler(rules='[{"sample_rate": 0}]', _environ={})
    for sampled in (True, False):
        parent = SpanContext(1, 2, True, TraceFlags(TraceFlags.SAMPLED if sampled else 0))
        ctx = trace.set_span_in_context(NonRecordingSpan(parent))
        r = s.should_sample(ctx, 1, "x")
        assert (r.decision is Decision.RECORD_AND_SAMPLE) is sampled


def test_rules_match_datadog_names_and_tags() -> None:
    rules = ('[{"service": "web", "name": "http.server.request", "resource": "GET /health*", '
             '"sample_rate": 0}, {"tags": {"tenant": "a?c"}, "sample_rate": 1}]')
    s = DatadogSampler(service="web", rules=rules, rates=RateByService(), _environ={})
    attrs = {"http.request.method": "GET", "http.route": "/healthz"}
    r = s.should_sample(None, 123, "GET /healthz", SpanKind.SERVER, attrs)
    assert r.decision is Decision.DROP
    r = s.should_sample(None, 123, "x", SpanKind.INTERNAL, {"tenant": "abc"})
    assert r.decision is Decision.RECORD_AND_SAMPLE and _dd(r) == (2, "-3")
    assert r.attributes["_dd.rule_psr"] == 1.0
    r = s.should_sample(None, 123, "x", SpanKind.INTERNAL, {"tenant": "zzz"})
    assert _dd(r) == (1, "-0")  # no rule matched


def test_rate_limit_applies_to_rule_matches() -> None:
    now = [100.0]
    s = DatadogSampler(rules='[{"sample_rate": 1}]', rate_limit=2, _environ={},
                       _clock=lambda: now[0])
    decisions = [s.should_sample(None, 123, "x").decision for _ in range(5)]
    assert decisions.count(Decision.RECORD_AND_SAMPLE) == 2
    now[0] += 1.0
    r = s.should_sample(None, 123, "x")
    assert r.decision is Decision.RECORD_AND_SAMPLE and "_dd.limit_psr" in r.attributes


@pytest.mark.parametrize("bad", ['{"sample_rate": 1}', '[{"sample_rate": 2}]', "[1]", "nope"])
def test_bad_rules(bad) -> None:
    with pytest.raises(ValueError):
        parse_sampling_rules(bad)
    with pytest.raises(ValueError, match="sampling_rules"):
        DatadogSampler(rules=bad, _environ={})
    DatadogSampler(_environ={"DD_TRACE_SAMPLING_RULES": bad})  # env: warning + default



def test_decision_reaches_exported_spans() -> None:
    sink = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}),
                              sampler=DatadogSampler(rules='[{"sample_rate": 1}]', _environ={}))
    provider.add_span_processor(SimpleSpanProcessor(sink))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("root"):
        with tracer.start_as_current_span("child"):
            pass
    provider.shutdown()
    [chunk] = translate_spans(list(sink.get_finished_spans()), TranslateOptions())
    root = next(s for s in chunk.spans if s.parent_id == 0)
    assert chunk.priority == 2
    assert chunk.spans[0].metrics["_sampling_priority_v1"] == 2
    assert chunk.spans[0].meta["_dd.p.dm"] == "-3"
    assert root.metrics["_dd.rule_psr"] == 1.0


def test_entry_point() -> None:
    from importlib.metadata import entry_points

    [ep] = entry_points(group="opentelemetry_traces_sampler", name="datadog")
    assert isinstance(ep.load()(None), DatadogSampler)
