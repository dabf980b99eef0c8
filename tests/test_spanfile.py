"""The span file format: parsing, validation messages, ids, times, normalization."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from otel_dd_bridge.model import DDSpan
from otel_dd_bridge.spanfile import (
    SpanFileError,
    build_chunks,
    parse_text,
    span_id_from_key,
    span_to_record,
    trace_id_from_key,
)

T0 = int(datetime(2026, 12, 2, 10, 0, tzinfo=timezone.utc).timestamp())


def _one(rec: dict, **kw) -> DDSpan:
    chunks, errors = build_chunks(parse_text(json.dumps(rec), "x.json"), **kw)
    assert errors == []
    (chunk,) = chunks
    (span,) = chunk.spans
    return span


def _error(text: str, source: str = "in.jsonl", **kw) -> str:
    try:
        records = parse_text(text, source)
    except SpanFileError as exc:
        return str(exc)
    chunks, errors = build_chunks(records, **kw)
    assert chunks == [] and errors
    return str(errors[0])


@pytest.mark.parametrize(("value", "ns"), [
    ("2026-12-02T10:00:00Z", T0 * 10**9),
    ("2026-12-02T10:00:00.123456789Z", T0 * 10**9 + 123456789),
    ("2026-12-02T12:30:00+02:30", T0 * 10**9),
    ("2026-12-02t10:00:00.5z", T0 * 10**9 + 500_000_000),
    (T0, T0 * 10**9),  # seconds
    (T0 + 0.25, T0 * 10**9 + 250_000_000),
    (T0 * 1000, T0 * 10**9),  # milliseconds
    (T0 * 10**6, T0 * 10**9),  # microseconds
    (T0 * 10**9 + 7, T0 * 10**9 + 7),  # nanoseconds
])
def test_start_times(value, ns) -> None:
    assert _one({"name": "a", "service": "s", "start": value, "duration": 1}).start == ns


@pytest.mark.parametrize(("value", "ns"), [
    (1.5, 1_500_000_000), (0, 0), ("250ms", 250_000_000), ("1h2m3.5s", 3723_500_000_000),
    ("90us", 90_000), ("7ns", 7), ("2h", 7200 * 10**9),
])
def test_durations(value, ns) -> None:
    assert _one({"name": "a", "service": "s", "start": T0, "duration": value}).duration == ns


def test_end_gives_the_duration() -> None:
    s = _one({"name": "a", "service": "s", "start": "2026-12-02T10:00:00Z",
              "end": "2026-12-02T12:00:00.5Z"})
    assert s.duration == 7200 * 10**9 + 500_000_000


@pytest.mark.parametrize(("text", "message"), [
    ('{"service": "s", "duration": 1}', "in.jsonl:1: name: is required"),
    ('{"name": "a", "duration": 1}', "in.jsonl:1: service: is required"),
    ('{"name": "a", "service": "s"}', "in.jsonl:1: end: is required (or duration)"),
    ('{"name": "a", "service": "s", "start": 5, "end": 6, "duration": 1}',
     "in.jsonl:1: duration: give end or duration, not both"),
    ('{"name": "a", "service": "s", "start": "2026-12-02T10:00:00", "duration": 1}',
     "in.jsonl:1: start: not an RFC 3339 time with a zone"),
    ('{"name": "a", "service": "s", "start": "2026-13-02T10:00:00Z", "duration": 1}',
     "in.jsonl:1: start: not a valid date/time"),
    ('{"name": "a", "service": "s", "duration": "5 minutes"}', "in.jsonl:1: duration: must be"),
    ('{"name": "a", "service": "s", "duration": 1, "tags": {"k": [1]}}',
     "in.jsonl:1: tags.k: must be text, a number or a boolean"),
    ('{"name": "a", "service": "s", "duration": 1, "metrics": {"m": "x"}}',
     "in.jsonl:1: metrics.m: must be a number"),
    ('{"name": "a", "service": "s", "duration": 1, "error": "yes"}',
     "in.jsonl:1: error: must be true/false or 0/1"),
    ('{"name": "a", "service": "s", "duration": 1, "parent": "nope"}',
     "in.jsonl:1: parent: no record has id 'nope'"),
    ('{"name": "a", "service": "s", "duration": 1, "nmae": "x"}', "in.jsonl:1: nmae: unknown field"),
    ('{"name": "a", "service": "s", "duration": 1}\n{"name": ', "in.jsonl:2: (json): "),
    ('{"name": "a", "service": "s", "duration": 1, "id": 1}\n'
     '{"name": "b", "service": "s", "duration": 1, "id": 1}', "in.jsonl:2: id: duplicate id '1'"),
    ('[1]', "in.jsonl:1: (record): expected a JSON object, got list"),
])
def test_errors_name_file_line_and_field(text, message) -> None:
    assert _error(text).startswith(message)


def test_field_line_inside_a_multiline_json_array() -> None:
    text = '[\n {"name": "a", "service": "s", "duration": 1},\n {\n  "name": "b",\n' \
           '  "service": "s",\n  "start": 10,\n  "end": 5\n }\n]\n'
    assert _error(text, "spans.json") == "spans.json:7: end: is before start"


def test_yaml_documents_lists_and_lines() -> None:
    text = ("---\nname: build\nservice: ci\nstart: 2026-12-02T10:00:00Z\nduration: 20m\n"
            "---\n- name: test\n  service: ci\n  duration: 1\n- name: deploy\n  service: ci\n"
            "  start: 2026-12-02T10:00:00Z\n  end: 2026-12-02T09:00:00Z\n")
    records = parse_text(text, "ci.yaml")
    assert [r.data["name"] for r in records] == ["build", "test", "deploy"]
    assert [r.line for r in records] == [2, 7, 10]
    chunks, errors = build_chunks(records)
    assert str(errors[0]) == "ci.yaml:13: end: is before start"
    assert _error("name: x\n  bad: : indent\n", "ci.yaml") == (
        "ci.yaml:2: (yaml): mapping values are not allowed here")
    good, _ = build_chunks(records[:1])
    assert good[0].spans[0].start == T0 * 10**9  # YAML's own timestamp type


def test_format_detection() -> None:
    one = '{"name": "a", "service": "s", "duration": 1}'
    assert len(parse_text(one, "a.json")) == 1
    assert len(parse_text(one + "\n" + one + "\n", "-")) == 2  # JSON Lines sniffed
    assert len(parse_text(f"[{one}, {one}]", "-")) == 2
    assert len(parse_text(one + "\n" + one, "a.jsonl")) == 2
    assert parse_text("", "a.jsonl") == []


def test_trace_key_ids_are_deterministic_and_join_across_inputs() -> None:
    a, _ = build_chunks(parse_text('{"id": "p", "name": "p", "service": "ci", "duration": 1}',
                                   "a"), trace_key="sha1")
    b, _ = build_chunks(parse_text('{"id": "c", "name": "c", "service": "ci", "duration": 1}',
                                   "b"), trace_key="sha1", parent_key="p")
    c, _ = build_chunks(parse_text('{"name": "d", "service": "ci", "duration": 1, '
                                   '"parent": "c"}', "c"), trace_key="sha1")
    (p,), (ch,), (d,) = a[0].spans, b[0].spans, c[0].spans
    tid = trace_id_from_key("sha1")
    assert p.trace_id == ch.trace_id == d.trace_id == tid & (2**64 - 1)
    assert p.meta["_dd.p.tid"] == f"{tid >> 64:016x}"
    assert p.span_id == span_id_from_key("sha1", "p") and ch.parent_id == p.span_id
    assert d.parent_id == ch.span_id and p.parent_id == 0
    assert trace_id_from_key("sha2") != tid and tid.bit_length() > 64


def test_without_trace_key_one_input_is_one_trace_with_random_ids() -> None:
    text = ('{"id": "r", "name": "r", "service": "s", "duration": 2}\n'
            '{"parent": "r", "name": "c", "service": "s", "duration": 1}\n')
    (c1,), _ = build_chunks(parse_text(text, "a"))
    (c2,), _ = build_chunks(parse_text(text, "a"))
    r, child = c1.spans
    assert child.parent_id == r.span_id and child.trace_id == r.trace_id
    assert c1.spans[0].trace_id != c2.spans[0].trace_id


def test_normalization_defaults_and_chunk_tags() -> None:
    s = _one({"name": "1 Deploy Prod!", "service": "CI Runner", "duration": 1,
              "error_message": "boom", "error_type": "Timeout", "tags": {"ok": True}},
             env="prod", version="1.2", tags={"team": "infra", "ok": "no"}, trace_key="k")
    assert s.name == "Deploy_Prod" and s.service == "ci_runner" and s.resource == "1 Deploy Prod!"
    assert s.error == 1 and s.meta["error.msg"] == "boom" and s.meta["error.type"] == "Timeout"
    assert s.meta["env"] == "prod" and s.meta["version"] == "1.2" and s.meta["team"] == "infra"
    assert s.meta["ok"] == "true"  # the record's own tag wins over global tags
    assert s.metrics["_sampling_priority_v1"] == 2 and s.meta["_dd.p.dm"] == "-4"
    assert s.metrics["_top_level"] == 1
    assert _one({"name": "a", "duration": 1}, default_service="dflt").service == "dflt"


def test_partial_keeps_the_good_records() -> None:
    text = ('{"name": "a", "service": "s", "duration": 1}\n{"name": "b", "service": "s"}\n'
            '{"name": "c", "service": "s", "duration": 1}\n')
    chunks, errors = build_chunks(parse_text(text, "f"), partial=True)
    assert [s.name for s in chunks[0].spans] == ["a", "c"]
    assert [str(e) for e in errors] == ["f:2: end: is required (or duration)"]


def test_recorded_datadog_spans_round_trip() -> None:
    span = DDSpan(trace_id=5, span_id=6, parent_id=0, service="svc", name="web.request",
                  resource="GET /", type="web", start=10**18, duration=12345, error=0,
                  meta={"_dd.p.dm": "-0", "_dd.p.tid": "00000000000000ab"},
                  metrics={"_sampling_priority_v1": 1, "_top_level": 1})
    line = json.dumps(span_to_record(span))
    (chunk,), errors = build_chunks(parse_text(line + "\n", "rec.jsonl"))
    assert errors == [] and chunk.spans == [span]
    assert chunk.priority == 1 and chunk.tags == {"_dd.p.dm": "-0"}


def test_an_incomplete_last_line_of_a_recording_is_skipped() -> None:
    span = DDSpan(1, 2, 0, "s", "n", "r", "", 10**18, 1, 0, {}, {})
    line = json.dumps(span_to_record(span))
    notes: list[str] = []
    records = parse_text(line + "\n" + line[:40], "rec.jsonl", warnings=notes)
    assert len(records) == 1 and notes == ["rec.jsonl:2: skipped an incomplete last line "
                                           "(an interrupted recording)"]
    with pytest.raises(SpanFileError, match="rec.jsonl:2"):  # a whole bad line is an error
        parse_text(line + "\n" + line[:40] + "\n", "rec.jsonl")
