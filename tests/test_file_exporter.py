"""DatadogFileExporter: exact content, rotation, permissions, crash safety (kill -9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import yaml
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind

from otel_dd_bridge.file_exporter import DatadogFileExporter
from otel_dd_bridge.spanfile import build_chunks, parse_text, span_to_record
from otel_dd_bridge.translate import TranslateOptions, translate_spans
from tests.spans import make_span

REPO = Path(__file__).resolve().parents[1]


def _batch(i: int, n: int = 3) -> list:
    root = make_span("GET /items", kind=SpanKind.SERVER, trace_id=1000 + i, span_id=1,
                     resource={"service.name": "shop"},
                     attributes={"http.request.method": "GET", "http.route": "/items"})
    kids = [make_span(f"step {k}", trace_id=1000 + i, span_id=10 + k, parent_id=1,
                      resource={"service.name": "shop"}) for k in range(n - 1)]
    return [root, *kids]


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_writes_exactly_the_translated_spans(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    exp = DatadogFileExporter(path, env="staging", _environ={})
    spans = _batch(1)
    assert exp.export(spans) is SpanExportResult.SUCCESS
    expected = [span_to_record(s) for c in translate_spans(
        spans, TranslateOptions(env="staging")) for s in c.spans]
    assert _lines(path) == expected
    assert exp.stats()["exported"] == 3
    exp.shutdown()
    assert exp.export(spans) is SpanExportResult.FAILURE
    assert exp.stats()["dropped.shutdown"] == 3


def test_settings_from_the_environment_and_permissions(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "rec.jsonl"
    old = os.umask(0)  # even with a permissive umask the file is user-only
    try:
        exp = DatadogFileExporter(_environ={"OTEL_DD_BRIDGE_FILE_PATH": str(path),
                                            "OTEL_DD_BRIDGE_FILE_MAX_BYTES": "4096",
                                            "OTEL_DD_BRIDGE_FILE_BACKUPS": "0"})
        exp.export(_batch(1))
    finally:
        os.umask(old)
    assert (exp.path, exp.max_bytes, exp.backups) == (str(path), 4096, 0)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    exp.shutdown()


def test_size_rotation_keeps_the_named_number_of_backups(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    exp = DatadogFileExporter(path, max_bytes=4000, backups=2, _environ={})
    for i in range(40):
        assert exp.export(_batch(i)) is SpanExportResult.SUCCESS
    exp.shutdown()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["spans.jsonl", "spans.jsonl.1", "spans.jsonl.2"]
    seen = []
    for name in ("spans.jsonl.2", "spans.jsonl.1", "spans.jsonl"):
        f = tmp_path / name
        assert 0 < f.stat().st_size <= 4000
        assert f.read_bytes().endswith(b"\n")
        seen += [r["trace_id"] for r in _lines(f)]
    # the newest traces survive, in order, each batch whole in one file
    assert seen == sorted(seen) and seen[-1] == 1039 and len(seen) % 3 == 0


def test_zero_backups_and_an_oversized_batch(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    exp = DatadogFileExporter(path, max_bytes=500, backups=0, _environ={})
    exp.export(_batch(1, n=8))  # bigger than max_bytes: still written whole
    exp.export(_batch(2, n=8))
    exp.shutdown()
    assert [p.name for p in tmp_path.iterdir()] == ["spans.jsonl"]
    assert {r["trace_id"] for r in _lines(path)} == {1002}


def test_yaml_documents_replay(tmp_path: Path) -> None:
    path = tmp_path / "spans.yaml"
    exp = DatadogFileExporter(path, format="yaml", _environ={})
    exp.export(_batch(7))
    exp.shutdown()
    docs = list(yaml.safe_load_all(path.read_text()))
    assert docs == [span_to_record(s) for c in translate_spans(_batch(7), TranslateOptions())
                    for s in c.spans]
    chunks, errors = build_chunks(parse_text(path.read_text(), str(path)))
    assert errors == [] and len(chunks[0].spans) == 3


def test_an_incomplete_tail_is_truncated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    exp = DatadogFileExporter(path, _environ={})
    exp.export(_batch(1))
    exp.shutdown()
    whole = path.read_bytes()
    with open(path, "ab") as f:
        f.write(b'{"trace_id": 12, "span_')  # what a machine crash mid-write could leave
    exp = DatadogFileExporter(path, _environ={})
    exp.export(_batch(2))
    exp.shutdown()
    data = path.read_bytes()
    assert data.startswith(whole) and b"span_{" not in data
    assert [r["trace_id"] for r in _lines(path)] == [1001] * 3 + [1002] * 3


def test_write_errors_are_counted_not_raised(tmp_path: Path) -> None:
    exp = DatadogFileExporter(tmp_path, _environ={})  # a directory: open() fails
    assert exp.export(_batch(1)) is SpanExportResult.FAILURE
    assert exp.stats()["dropped.write_error"] == 3


_WRITER = textwrap.dedent("""
    import sys
    from otel_dd_bridge.file_exporter import DatadogFileExporter
    from tests.test_file_exporter import _batch
    exp = DatadogFileExporter(sys.argv[1], max_bytes=20000, backups=50, _environ={})
    i = 0
    while True:
        exp.export(_batch(i, n=5))
        i += 1
        if i == 20:
            print("ready", flush=True)
""")


def test_kill_minus_9_mid_stream_leaves_only_whole_records(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(0.3)  # well into writing (and rotating) at full speed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    files = sorted(tmp_path.iterdir())
    assert len(files) > 2  # it rotated while being killed
    total = 0
    for f in files:
        data = f.read_bytes()
        assert data == b"" or data.endswith(b"\n"), f
        records = parse_text(data.decode(), str(f), "jsonl")
        chunks, errors = build_chunks(records)
        assert errors == []
        assert all(len(c.spans) == 5 for c in chunks)  # no batch was cut
        total += len(records)
    assert total >= 100
    # a new writer appends after the last whole record
    exp = DatadogFileExporter(path, max_bytes=10**9, _environ={})
    exp.export(_batch(10**6))
    exp.shutdown()
    assert _lines(path)[-1]["trace_id"] == 1000 + 10**6
