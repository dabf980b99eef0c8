"""The span file format of ``otel-dd-bridge send`` and ``view``: parse, validate, build DDSpans.

Input is a JSON object, a JSON array of objects, JSON Lines (one object per line) or YAML (one
mapping per document, or a list of them; needs the ``yaml`` extra). One record is one span:

=================  ==========================================================================
field              meaning
=================  ==========================================================================
``name``           operation name (required), normalized as the Agent does
``service``        service (required unless ``--service``/``DD_SERVICE`` gives a default)
``resource``       resource (default: ``name``)
``type``           span type (``web``, ``db``, ``ci`` ...; default ``""``)
``start``          RFC 3339 time (``2026-12-02T10:00:00.5Z``, a zone is required) or an
                   epoch number: seconds, milliseconds, microseconds or nanoseconds, told
                   apart by magnitude (< 1e11 s, < 1e14 ms, < 1e17 us, else ns).
                   Default: ``end - duration``, else now - ``duration``.
``end``            as ``start``; give ``end`` or ``duration``, not both
``duration``       seconds (a number) or a Go-style text: ``250ms``, ``1h2m3.5s``, ``90us``
``id``             a local id (text or integer) other records refer to
``parent``         the local id of the parent span
``trace``          a text key: records with the same key form one trace (as ``--trace-key``)
``tags``           mapping of text to text (numbers and booleans are converted)
``metrics``        mapping of text to number
``error``          boolean or 0/1 (default: true when ``error_message`` is given)
``error_message``  -> meta ``error.msg``;  ``error_type`` -> ``error.type``;
                   ``error_stack`` -> ``error.stack``
=================  ==========================================================================

Ids. A trace key (the record's ``trace``, else ``--trace-key``) gives a deterministic 128-bit
trace id (:func:`trace_id_from_key`), and every local ``id`` then a deterministic span id
(:func:`span_id_from_key`), so a ``parent`` that is not in the file -- or ``--parent-key`` for
the records without ``parent`` -- points at a span sent by another, independent invocation
with the same trace key. Without a trace key, ids are random and one input is one trace; a
``parent`` must then name an ``id`` of the same input.

A record with integer ``trace_id`` and ``span_id`` and a ``meta`` mapping is a *Datadog span*
as :class:`~otel_dd_bridge.file_exporter.DatadogFileExporter` records it (:func:`span_to_record`):
it is replayed as is (``start``/``duration`` in nanoseconds), only normalized again.

Errors name the file, the line (of the field when it can be found, else of the record) and
the field: ``spans.jsonl:3: end: is before start``.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from otel_dd_bridge.model import DDSpan, TraceChunk
from otel_dd_bridge.normalize import (
    MAX_RESOURCE_LEN,
    MAX_TYPE_LEN,
    normalize_name,
    normalize_service,
    safe_str,
    truncate_meta_key,
    truncate_meta_value,
    truncate_utf8,
)

__all__ = [
    "Record",
    "SpanFileError",
    "build_chunks",
    "parse_text",
    "record_to_dd_span",
    "span_id_from_key",
    "span_to_record",
    "trace_id_from_key",
]

_U64 = (1 << 64) - 1
_FIELDS = frozenset({
    "name", "service", "resource", "type", "start", "end", "duration", "id", "parent", "trace",
    "tags", "metrics", "error", "error_message", "error_type", "error_stack",
})
_DD_FIELDS = frozenset({
    "trace_id", "span_id", "parent_id", "service", "name", "resource", "type", "start",
    "duration", "error", "meta", "metrics",
})
# Chunk-level sampling of spans sent by hand: user-keep, decision maker "manual" (-4). A span
# posted on purpose must not be sampled away.
_MANUAL_PRIORITY = 2
_MANUAL_DM = "-4"


class SpanFileError(ValueError):
    """A malformed record: ``str()`` is the one-line ``FILE:LINE: FIELD: reason`` message."""

    def __init__(self, source: str, line: int, field_name: str, reason: str) -> None:
        self.source, self.line, self.field, self.reason = source, line, field_name, reason
        super().__init__(f"{source}:{line}: {field_name}: {reason}")


@dataclass(slots=True)
class Record:
    """One parsed input record with where it came from (for error messages)."""

    data: dict[str, Any]
    source: str
    line: int
    field_lines: dict[str, int] = field(default_factory=dict)

    def error(self, field_name: str, reason: str) -> SpanFileError:
        top = field_name.split(".", 1)[0]
        return SpanFileError(self.source, self.field_lines.get(top, self.line), field_name, reason)

    @property
    def is_dd_span(self) -> bool:
        d = self.data
        return (isinstance(d.get("trace_id"), int) and isinstance(d.get("span_id"), int)
                and isinstance(d.get("meta"), dict))


# --------------------------------------------------------------------------- ids


def trace_id_from_key(key: str) -> int:
    """A deterministic, non-zero 128-bit trace id from a text (SHA-256, first 16 bytes)."""
    v = int.from_bytes(hashlib.sha256(b"otel-dd-bridge trace\0" + key.encode()).digest()[:16], "big")
    return v or 1


def span_id_from_key(trace_key: str, span_key: str) -> int:
    """A deterministic, non-zero 64-bit span id from the trace key and a local span id."""
    h = hashlib.sha256(b"otel-dd-bridge span\0" + trace_key.encode() + b"\0" + span_key.encode())
    return int.from_bytes(h.digest()[:8], "big") or 1


def _random_id(bits: int) -> int:
    return secrets.randbits(bits) or 1


# --------------------------------------------------------------------------- reading


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _field_lines_json(
    text: str, start: int, end: int, line: int, keys: Iterable[str]
) -> dict[str, int]:
    out: dict[str, int] = {}
    for k in keys:
        pos = text.find(json.dumps(k), start, end)
        if pos >= 0:
            out[k] = line + text.count("\n", start, pos)
    return out


def _as_records_json(
    value: Any, source: str, text: str, start: int, end: int, line: int | None = None
) -> list[Record]:
    # ``line``: the line of ``start`` when the caller knows it (counting from 0 for every
    # record would make big inputs quadratic).
    if line is None:
        line = _line_of(text, start)
    if isinstance(value, dict):
        return [Record(value, source, line, _field_lines_json(text, start, end, line, value))]
    raise SpanFileError(source, line, "(record)", f"expected a JSON object, got {type(value).__name__}")


def _parse_json_array(text: str, source: str) -> list[Record]:
    dec = json.JSONDecoder()
    i = text.index("[") + 1
    out: list[Record] = []
    n = len(text)
    at, at_line = 0, 1  # a moving line counter: positions only grow
    while True:
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i < n and text[i] == "]":
            break
        try:
            value, j = dec.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise SpanFileError(source, exc.lineno, "(json)", exc.msg) from None
        at_line += text.count("\n", at, i)
        at = i
        out.extend(_as_records_json(value, source, text, i, j, at_line))
        i = j
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i < n and text[i] == ",":
            i += 1
        elif i < n and text[i] == "]":
            break
        else:
            raise SpanFileError(source, _line_of(text, i), "(json)", "expected ',' or ']'")
    rest = text[i + 1:].strip()
    if rest:
        raise SpanFileError(source, _line_of(text, i + 1), "(json)", "extra data after the array")
    return out


def _parse_json_lines(text: str, source: str, warnings: list[str]) -> list[Record]:
    out: list[Record] = []
    lines = text.split("\n")
    pos = 0
    for no, raw in enumerate(lines, 1):
        start, pos = pos, pos + len(raw) + 1
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            if no == len(lines) and not text.endswith("\n") and out and out[-1].is_dd_span:
                # The unterminated last line of a recording: a writer died mid-line (see
                # file_exporter). Everything before it is whole; skip it and say so.
                warnings.append(f"{source}:{no}: skipped an incomplete last line "
                                "(an interrupted recording)")
                break
            raise SpanFileError(source, no, "(json)", exc.msg) from None
        out.extend(_as_records_json(value, source, text, start, start + len(raw), no))
    return out


def _parse_yaml(text: str, source: str) -> list[Record]:
    try:
        import yaml
    except ImportError:
        raise SpanFileError(
            source, 1, "(yaml)", "YAML input needs PyYAML: pip install 'otel-dd-bridge[yaml]'"
        ) from None
    loader = yaml.SafeLoader(text)
    out: list[Record] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            data = loader.construct_document(node)
            if data is None:
                continue
            items: list[tuple[Any, Any]] = [(node, data)]
            if isinstance(node, yaml.SequenceNode) and isinstance(data, list):
                items = list(zip(node.value, data, strict=False))
            for item_node, item in items:
                line = item_node.start_mark.line + 1
                if not isinstance(item, dict):
                    raise SpanFileError(source, line, "(record)",
                                        f"expected a mapping, got {type(item).__name__}")
                lines = {}
                if isinstance(item_node, yaml.MappingNode):
                    lines = {str(k.value): k.start_mark.line + 1 for k, _v in item_node.value}
                out.append(Record(item, source, line, lines))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise SpanFileError(source, (mark.line + 1) if mark else 1, "(yaml)",
                            str(exc.problem or exc.context)) from None
    except yaml.YAMLError as exc:
        raise SpanFileError(source, 1, "(yaml)", str(exc)) from None
    finally:
        loader.dispose()
    return out


def parse_text(
    text: str, source: str, fmt: str = "auto", warnings: list[str] | None = None
) -> list[Record]:
    """Parse one input into records (no validation of the fields yet).

    Args:
        text: the whole input.
        source: the file name used in messages (``-`` for standard input).
        fmt: ``auto`` (by extension, else by content), ``json``, ``jsonl`` or ``yaml``.
        warnings: receives non-fatal notes (a skipped incomplete last line of a recording).

    Raises:
        SpanFileError: the input is not valid JSON/JSON Lines/YAML.
    """
    notes = warnings if warnings is not None else []
    if fmt == "auto":
        low = source.lower()
        if low.endswith((".yaml", ".yml")):
            fmt = "yaml"
        elif low.endswith((".jsonl", ".ndjson")) or re.search(r"\.jsonl\.\d+$", low):
            fmt = "jsonl"
        else:
            head = text.lstrip()[:1]
            fmt = "json" if head in ("[", "{") else ("jsonl" if not head else "yaml")
    if fmt == "yaml":
        return _parse_yaml(text, source)
    if fmt == "jsonl":
        return _parse_json_lines(text, source, notes)
    stripped = text.lstrip()
    if stripped.startswith("["):
        return _parse_json_array(text, source)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several objects: JSON Lines
            return _parse_json_lines(text, source, notes)
        raise SpanFileError(source, exc.lineno, "(json)", exc.msg) from None
    start = len(text) - len(stripped)
    return _as_records_json(value, source, text, start, len(text))


# --------------------------------------------------------------------------- times

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9})\d*)?([Zz]|[+-]\d{2}:\d{2})"
)
_DUR = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
         "h": 3600 * 10**9}


def _scaled(v: float | int, factor: int) -> int:
    # Through the shortest decimal repr: 1796205600.25 s is ...250000000 ns, not ...249999872.
    if isinstance(v, float):
        return int((Decimal(repr(v)) * factor).to_integral_value(ROUND_HALF_EVEN))
    return v * factor


def _epoch_ns(v: float | int) -> int:
    a = abs(v)
    if a < 1e11:
        return _scaled(v, 10**9)
    if a < 1e14:
        return _scaled(v, 10**6)
    if a < 1e17:
        return _scaled(v, 10**3)
    return int(v)


def _time_ns(rec: Record, name: str) -> int:
    import calendar

    v = rec.data[name]
    if isinstance(v, bool):
        raise rec.error(name, "must be an RFC 3339 time or an epoch number")
    if isinstance(v, (int, float)):
        if v != v or v in (float("inf"), float("-inf")) or v < 0:
            raise rec.error(name, "must be a non-negative finite epoch number")
        return _epoch_ns(v)
    if not isinstance(v, str):
        # YAML turns unquoted timestamps into datetime objects.
        import datetime as _dt

        if isinstance(v, _dt.datetime):
            if v.tzinfo is None:
                v = v.replace(tzinfo=_dt.timezone.utc)  # YAML timestamps without zone are UTC
            delta = v - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
            return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000
        raise rec.error(name, "must be an RFC 3339 time or an epoch number")
    m = _RFC3339.fullmatch(v.strip())
    if not m:
        raise rec.error(name, f"not an RFC 3339 time with a zone (e.g. 2026-12-02T10:00:00Z): {v!r}")
    y, mo, d, hh, mi, ss, frac, zone = m.groups()
    try:
        secs = calendar.timegm((int(y), int(mo), int(d), int(hh), int(mi), int(ss), 0, 0, 0))
        if not (1 <= int(mo) <= 12 and 1 <= int(d) <= 31 and int(hh) < 24 and int(mi) < 60
                and int(ss) < 61):
            raise ValueError
    except (ValueError, OverflowError):
        raise rec.error(name, f"not a valid date/time: {v!r}") from None
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        secs -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return secs * 10**9 + int((frac or "0").ljust(9, "0"))


def _duration_ns(rec: Record) -> int:
    v = rec.data["duration"]
    if isinstance(v, bool):
        raise rec.error("duration", "must be seconds (a number) or a text like 1h2m3s")
    if isinstance(v, (int, float)):
        if v != v or v < 0 or v == float("inf"):
            raise rec.error("duration", "must be a non-negative number of seconds")
        return _scaled(v, 10**9)
    if isinstance(v, str):
        s = v.strip()
        pos, total = 0, Decimal(0)
        for m in _DUR.finditer(s):
            if m.start() != pos:
                break
            total += Decimal(m.group(1)) * _UNIT[m.group(2)]
            pos = m.end()
        if s and pos == len(s):
            return int(total.to_integral_value(ROUND_HALF_EVEN))
    raise rec.error("duration", f"must be seconds (a number) or a text like 1h2m3s, got {v!r}")


# --------------------------------------------------------------------------- records -> spans


def _text(rec: Record, name: str, required: bool = False, default: str = "") -> str:
    if name not in rec.data or rec.data[name] is None:
        if required:
            raise rec.error(name, "is required")
        return default
    v = rec.data[name]
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise rec.error(name, f"must be text, got {type(v).__name__}")
    s = str(v)
    if required and not s.strip():
        raise rec.error(name, "must not be empty")
    return safe_str(s)


def _key(rec: Record, name: str) -> str | None:
    v = rec.data.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (str, int)) or str(v) == "":
        raise rec.error(name, "must be a non-empty text or an integer")
    return str(v)


def _meta(rec: Record, name: str) -> dict[str, str]:
    v = rec.data.get(name)
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise rec.error(name, "must be a mapping of text to text")
    out: dict[str, str] = {}
    for k, x in v.items():
        if not isinstance(k, str) or not k:
            raise rec.error(name, f"keys must be non-empty text, got {k!r}")
        if isinstance(x, bool):
            x = "true" if x else "false"
        elif x is None or isinstance(x, (dict, list)):
            raise rec.error(f"{name}.{k}", "must be text, a number or a boolean")
        out[truncate_meta_key(safe_str(k))] = truncate_meta_value(safe_str(str(x)))
    return out


def _metrics(rec: Record, name: str) -> dict[str, float | int]:
    v = rec.data.get(name)
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise rec.error(name, "must be a mapping of text to number")
    out: dict[str, float | int] = {}
    for k, x in v.items():
        if not isinstance(k, str) or not k:
            raise rec.error(name, f"keys must be non-empty text, got {k!r}")
        if isinstance(x, bool) or not isinstance(x, (int, float)) or x != x:
            raise rec.error(f"{name}.{k}", f"must be a number, got {x!r}")
        out[truncate_meta_key(safe_str(k))] = x
    return out


def _u64(rec: Record, name: str) -> int:
    v = rec.data.get(name, 0)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _U64:
        raise rec.error(name, "must be an unsigned 64-bit integer")
    return v


def _dd_record_to_span(rec: Record) -> DDSpan:
    d = rec.data
    unknown = sorted(set(d) - _DD_FIELDS)
    if unknown:
        raise rec.error(unknown[0], "unknown field of a recorded Datadog span")
    for f in ("trace_id", "span_id", "parent_id"):
        _u64(rec, f)
    start, duration = d.get("start", 0), d.get("duration", 0)
    for f, x in (("start", start), ("duration", duration)):
        if isinstance(x, bool) or not isinstance(x, int) or x < 0:
            raise rec.error(f, "must be a non-negative integer of nanoseconds")
    err = d.get("error", 0)
    if isinstance(err, bool) or err not in (0, 1):
        raise rec.error("error", "must be 0 or 1")
    return DDSpan(
        trace_id=d["trace_id"], span_id=d["span_id"], parent_id=_u64(rec, "parent_id"),
        service=normalize_service(_text(rec, "service")),
        name=normalize_name(_text(rec, "name")),
        resource=truncate_utf8(_text(rec, "resource") or _text(rec, "name"), MAX_RESOURCE_LEN),
        type=truncate_utf8(_text(rec, "type"), MAX_TYPE_LEN),
        start=start, duration=duration, error=int(err),
        meta=_meta(rec, "meta"), metrics=_metrics(rec, "metrics"),
    )


def record_to_dd_span(
    rec: Record,
    *,
    trace_key: str | None,
    trace_id128: int,
    local_ids: dict[tuple[int, str], int],
    parent_key: str | None,
    default_service: str | None,
    now_ns: int,
) -> tuple[DDSpan, int]:
    """Validate one record and build its DDSpan; returns it with the 128-bit trace id.

    ``local_ids`` maps (trace id, local id) to the span ids assigned so far (random ids when
    there is no trace key) and is filled in by the caller's first pass.

    Raises:
        SpanFileError: a field is missing or malformed (the message names it).
    """
    if rec.is_dd_span:
        span = _dd_record_to_span(rec)
        tid = span.meta.get("_dd.p.tid", "")
        high = int(tid, 16) if re.fullmatch(r"[0-9a-fA-F]{1,16}", tid) else 0
        return span, (high << 64) | span.trace_id
    d = rec.data
    unknown = sorted(set(d) - _FIELDS)
    if unknown:
        raise rec.error(unknown[0], "unknown field (see `otel-dd-bridge send --help` for the schema)")
    name = _text(rec, "name", required=True)
    service = _text(rec, "service", required=default_service is None, default=default_service or "")
    resource = _text(rec, "resource") or name
    span_type = _text(rec, "type")

    has_start, has_end, has_dur = (d.get(k) is not None for k in ("start", "end", "duration"))
    if has_end and has_dur:
        raise rec.error("duration", "give end or duration, not both")
    if not has_end and not has_dur:
        raise rec.error("end", "is required (or duration)")
    duration = _duration_ns(rec) if has_dur else None
    end = _time_ns(rec, "end") if has_end else None
    if has_start:
        start = _time_ns(rec, "start")
    elif end is not None:
        raise rec.error("start", "is required when end is given")
    else:
        assert duration is not None
        start = now_ns - duration
    if end is not None:
        if end < start:
            raise rec.error("end", "is before start")
        duration = end - start
    assert duration is not None

    meta = _meta(rec, "tags")
    metrics = _metrics(rec, "metrics")
    err_v = d.get("error")
    if err_v is None:
        error = 1 if d.get("error_message") is not None else 0
    elif err_v in (0, 1, True, False):
        error = int(err_v)
    else:
        raise rec.error("error", "must be true/false or 0/1")
    for f, k in (("error_message", "error.msg"), ("error_type", "error.type"),
                 ("error_stack", "error.stack")):
        if d.get(f) is not None:
            meta[k] = truncate_meta_value(_text(rec, f))

    key = _key(rec, "trace") or trace_key
    t128 = trace_id_from_key(key) if key is not None else trace_id128
    low = t128 & _U64
    local = _key(rec, "id")
    if local is not None:
        span_id = local_ids[(t128, local)]
    else:
        span_id = _random_id(64)
    parent = _key(rec, "parent")
    if parent is not None:
        if (t128, parent) in local_ids:
            parent_id = local_ids[(t128, parent)]
        elif key is not None:
            parent_id = span_id_from_key(key, parent)
        else:
            raise rec.error("parent", f"no record has id {parent!r} (and no --trace-key is given)")
    elif parent_key is not None and key is not None:
        parent_id = span_id_from_key(key, parent_key)
    else:
        parent_id = 0
    if parent_id == span_id:
        raise rec.error("parent", "a span cannot be its own parent")
    return DDSpan(
        trace_id=low, span_id=span_id, parent_id=parent_id,
        service=normalize_service(service), name=normalize_name(name),
        resource=truncate_utf8(resource, MAX_RESOURCE_LEN),
        type=truncate_utf8(span_type, MAX_TYPE_LEN),
        start=start, duration=duration, error=error, meta=meta, metrics=metrics,
    ), t128


def build_chunks(
    records: Sequence[Record],
    *,
    trace_key: str | None = None,
    parent_key: str | None = None,
    default_service: str | None = None,
    env: str | None = None,
    version: str | None = None,
    tags: Mapping[str, str] | None = None,
    partial: bool = False,
    now_ns: int | None = None,
) -> tuple[list[TraceChunk], list[SpanFileError]]:
    """Turn records into trace chunks, one per trace id (in input order).

    Hand-written spans get ``env``/``version``/global ``tags`` (unless set), the manual-keep
    sampling priority, ``_dd.p.tid`` for the upper 64 trace-id bits, and ``_top_level`` when
    their parent is not in the input or has another service (we send
    ``Datadog-Client-Computed-Top-Level``). Recorded Datadog spans are replayed unchanged.

    Returns:
        the chunks and the errors. Without ``partial`` any error means no chunk is returned.
    """
    now = time.time_ns() if now_ns is None else now_ns
    errors: list[SpanFileError] = []
    default_t128 = trace_id_from_key(trace_key) if trace_key is not None else _random_id(128)
    local_ids: dict[tuple[int, str], int] = {}
    # First pass: assign span ids to local ids (a parent may come after its child).
    failed: set[int] = set()
    for i, rec in enumerate(records):
        if rec.is_dd_span:
            continue
        try:
            local = _key(rec, "id")
            key = _key(rec, "trace") or trace_key
        except SpanFileError as exc:
            errors.append(exc)
            failed.add(i)
            continue
        if local is None:
            continue
        t128 = trace_id_from_key(key) if key is not None else default_t128
        if (t128, local) in local_ids:
            errors.append(rec.error("id", f"duplicate id {local!r}"))
            failed.add(i)
            continue
        local_ids[(t128, local)] = span_id_from_key(key, local) if key is not None else _random_id(64)

    by_trace: dict[int, tuple[TraceChunk, int, bool]] = {}
    for i, rec in enumerate(records):
        if i in failed:
            continue
        try:
            span, t128 = record_to_dd_span(
                rec, trace_key=trace_key, trace_id128=default_t128, local_ids=local_ids,
                parent_key=parent_key, default_service=default_service, now_ns=now,
            )
        except SpanFileError as exc:
            errors.append(exc)
            continue
        manual = not rec.is_dd_span
        if manual:
            for k, v in (("env", env), ("version", version)):
                if v and k not in span.meta:
                    span.meta[k] = v
            for k, v in (tags or {}).items():
                span.meta.setdefault(k, v)
        entry = by_trace.get(span.trace_id)
        if entry is None:
            entry = (TraceChunk(spans=[]), t128 >> 64, manual)
            by_trace[span.trace_id] = entry
        entry[0].spans.append(span)
    if errors and not partial:
        return [], errors
    chunks: list[TraceChunk] = []
    for chunk, high, manual in by_trace.values():
        _finish(chunk, high, manual)
        chunks.append(chunk)
    return chunks, errors


def _finish(chunk: TraceChunk, high: int, manual: bool) -> None:
    first = chunk.spans[0]
    if not manual:
        prio = first.metrics.get("_sampling_priority_v1")
        chunk.priority = int(prio) if prio is not None else None
        chunk.origin = first.meta.get("_dd.origin", "")
        if "_dd.p.dm" in first.meta:
            chunk.tags["_dd.p.dm"] = first.meta["_dd.p.dm"]
        return
    by_id = {s.span_id: s for s in chunk.spans}
    for s in chunk.spans:
        parent = by_id.get(s.parent_id)
        if parent is None or parent.service != s.service:
            s.metrics.setdefault("_top_level", 1)
    prio = first.metrics.setdefault("_sampling_priority_v1", _MANUAL_PRIORITY)
    chunk.priority = int(prio)
    first.meta.setdefault("_dd.p.dm", _MANUAL_DM)
    chunk.tags["_dd.p.dm"] = first.meta["_dd.p.dm"]
    if high:
        first.meta.setdefault("_dd.p.tid", f"{high:016x}")


def span_to_record(span: DDSpan) -> dict[str, Any]:
    """The JSON rendering of a DDSpan (what the recorder writes and ``--dry-run`` prints).

    Keys and units are those of the Agent's v0.4 span: ids as unsigned integers (``trace_id``
    the low 64 bits, the upper half in meta ``_dd.p.tid``), ``start``/``duration`` in ns.
    """
    return {
        "trace_id": span.trace_id, "span_id": span.span_id, "parent_id": span.parent_id,
        "service": span.service, "name": span.name, "resource": span.resource,
        "type": span.type, "start": span.start, "duration": span.duration,
        "error": span.error, "meta": dict(span.meta), "metrics": dict(span.metrics),
    }
