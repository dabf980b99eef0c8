"""Coverage-guided fuzzing (atheris / libFuzzer) of translate + encode + the exporter's guards.

The input bytes drive a span builder (``atheris.FuzzedDataProvider``): ids (0 included),
times (skewed, reversed), names and attribute keys/values (arbitrary unicode with lone
surrogates, invalid UTF-8 bytes, NaN/Inf, huge ints, nested lists). For every input:

* ``DatadogSpanExporter.export()`` returns (an exception is a crash: libFuzzer saves the input);
* every body sent decodes as msgpack with valid UTF-8 and passes the Agent-limit checks of
  ``tests/test_fuzz.py``;
* ``received == exported + dropped`` and ``internal_error == 0``.

Run: ``bash fuzz/run.sh [seconds]`` (default 60). Not part of CI (see fuzz/README.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports():
    import httpx
    import msgpack  # noqa: F401
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    import otel_dd_bridge.delivery  # noqa: F401
    import otel_dd_bridge.encoding.msgpack_v04  # noqa: F401
    import otel_dd_bridge.encoding.msgpack_v05  # noqa: F401
    import otel_dd_bridge.normalize  # noqa: F401
    import otel_dd_bridge.translate  # noqa: F401
    from otel_dd_bridge import DatadogSpanExporter

from tests.test_fuzz import Sink, check_agent_limits  # noqa: E402

KINDS = list(SpanKind)


def _value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> object:
    choice = fdp.ConsumeIntInRange(0, 8 if depth < 3 else 6)
    if choice == 0:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 64))
    if choice == 1:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 64))
    if choice == 2:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 32))
    if choice == 3:
        return fdp.ConsumeBool()
    if choice == 4:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 12))
    if choice == 5:
        return fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else fdp.ConsumeFloat()
    if choice == 6:
        return "x" * fdp.ConsumeIntInRange(0, 40_000)
    return [_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]


def _attrs(fdp: atheris.FuzzedDataProvider) -> dict[str, object]:
    return {fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 24)): _value(fdp)
            for _ in range(fdp.ConsumeIntInRange(0, 8))}


def _span(fdp: atheris.FuzzedDataProvider, trace_id: int) -> ReadableSpan:
    if fdp.ConsumeIntInRange(0, 9) == 0:
        trace_id = 0
    span_id = fdp.ConsumeIntInRange(0, 2**64 - 1)
    parent = fdp.ConsumeIntInRange(0, 2**64 - 1) if fdp.ConsumeBool() else None
    start = fdp.ConsumeIntInRange(0, 2**63 - 1)
    end = start + fdp.ConsumeIntInRange(-(10**12), 10**12)
    events = [Event(fdp.ConsumeUnicode(8), _attrs(fdp), timestamp=fdp.ConsumeIntInRange(0, 2**63))
              for _ in range(fdp.ConsumeIntInRange(0, 2))]
    status = [Status(StatusCode.UNSET), Status(StatusCode.OK),
              Status(StatusCode.ERROR, fdp.ConsumeUnicode(16))][fdp.ConsumeIntInRange(0, 2)]
    return ReadableSpan(
        name=fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 120)),
        context=SpanContext(trace_id, span_id, False, TraceFlags(fdp.ConsumeIntInRange(0, 255))),
        parent=SpanContext(trace_id, parent, fdp.ConsumeBool(), TraceFlags(1)) if parent else None,
        resource=Resource(_attrs(fdp)), attributes=_attrs(fdp), events=events,
        kind=KINDS[fdp.ConsumeIntInRange(0, len(KINDS) - 1)], status=status,
        start_time=start, end_time=end,
    )


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    api = "v0.5" if fdp.ConsumeBool() else "v0.4"
    trace_id = fdp.ConsumeIntInRange(1, 2**128 - 1)
    spans = [_span(fdp, trace_id) for _ in range(fdp.ConsumeIntInRange(1, 6))]
    sink = Sink()
    exp = DatadogSpanExporter(agent_url="http://127.0.0.1:9", api_version=api, _environ={},
                              _transport=httpx.MockTransport(sink))
    exp.export(spans)
    got = 0
    for body in sink.bodies:
        if api == "v0.4":
            got += check_agent_limits(body, exp.config.max_payload_size)
    s = exp.stats()
    dropped = sum(v for k, v in s.items() if k.startswith("dropped."))
    assert s["received"] == s["exported"] + dropped, s
    assert s["dropped.internal_error"] == 0, s
    if api == "v0.4":
        assert got == s["exported"], (got, s)
    exp.shutdown()


def main() -> None:
    import logging

    logging.disable(logging.CRITICAL)  # the exporter's warnings would flood the fuzzer output
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
