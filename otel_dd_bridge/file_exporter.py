"""``DatadogFileExporter``: records the translated Datadog spans to a file instead of sending them.

What is written is exactly what :class:`~otel_dd_bridge.exporter.DatadogSpanExporter` would
send (same translation, normalization and sampling tags), rendered by
:func:`~otel_dd_bridge.spanfile.span_to_record`: one JSON object per line (``jsonl``) or one
YAML document per span (``yaml``, ``---`` ... ``...``). ``otel-dd-bridge send FILE`` replays a
recording to an Agent or the intake later (air-gapped or offline runs); ``otel-dd-bridge view
FILE`` draws it.

Crash safety. Each ``export()`` renders its whole batch first and appends it with one
``os.write`` on an ``O_APPEND`` descriptor: there is no user-space buffer to lose, and a
process killed with SIGKILL leaves whole records (the kernel completes a write to a regular
file that it has started). A full disk (or any other write error) drops the whole batch,
counted as ``dropped.write_error``, and the part of it that fitted is truncated away at once;
only a machine crash can leave a cut record: opening a file whose end is not a record boundary
truncates the incomplete tail, and the reader (``send``/``view``) skips an unterminated last
line. No ``fsync``: surviving power loss is not worth a disk flush per batch.

Rotation. Before a batch that would take the file over ``file_max_bytes``, ``PATH`` becomes
``PATH.1`` (``PATH.1`` -> ``PATH.2`` ... up to ``file_backups``; the oldest is deleted). A
single batch larger than the limit is still written whole, into a fresh file.

Files are created with mode 0600 (spans may carry user data); missing parent directories with
0700.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_dd_bridge._telemetry import ExportCounters, RateLimitedLog
from otel_dd_bridge.config import ExporterConfig, resolve_config
from otel_dd_bridge.delivery import sanitize_chunks
from otel_dd_bridge.exporter import translate_options
from otel_dd_bridge.model import TraceChunk
from otel_dd_bridge.spanfile import span_to_record
from otel_dd_bridge.translate import _Cache, translate_spans_with_stats

logger = logging.getLogger(__name__)

__all__ = ["DatadogFileExporter", "render_chunks"]

_YAML_END = b"\n...\n"


def render_chunks(chunks: Sequence[TraceChunk], fmt: str = "jsonl") -> bytes:
    """The bytes appended for these chunks: whole records only, each ending in a newline."""
    records = [span_to_record(s) for c in chunks for s in c.spans]
    if fmt == "yaml":
        import yaml

        return b"".join(
            yaml.safe_dump(r, sort_keys=False, explicit_start=True, explicit_end=True,
                           allow_unicode=True).encode("utf-8")
            for r in records
        )
    return b"".join(
        json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
        for r in records
    )


def _repair_tail(path: str, fmt: str) -> int:
    """Truncate an incomplete last record left by a crash; returns the bytes removed."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return 0
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return 0
        marker = _YAML_END if fmt == "yaml" else b"\n"
        tail_len = min(size, 1 << 20)
        os.lseek(fd, size - tail_len, os.SEEK_SET)
        tail = os.read(fd, tail_len)
        if tail.endswith(marker):
            return 0
        cut = tail.rfind(marker)
        keep = (size - tail_len + cut + len(marker)) if cut >= 0 else 0
        if cut < 0 and tail_len < size:
            return 0  # a record over 1 MiB without end: leave it to the reader
        os.ftruncate(fd, keep)
        return size - keep
    finally:
        os.close(fd)


class DatadogFileExporter(SpanExporter):
    """An OpenTelemetry SDK span exporter that appends the translated Datadog spans to a file.

    Every keyword is optional; unset ones come from the environment, then defaults
    (``OTEL_DD_BRIDGE_FILE_PATH``, ``..._FILE_MAX_BYTES``, ``..._FILE_BACKUPS``,
    ``..._FILE_FORMAT`` and the translation settings of :class:`DatadogSpanExporter`).

    Args:
        path: the file to append to.
        max_bytes: rotate before the file would exceed this size.
        backups: rotated files kept (``PATH.1`` is the newest).
        format: ``"jsonl"`` or ``"yaml"`` (needs PyYAML, the ``yaml`` extra).
        service, env, version, tags: as for :class:`DatadogSpanExporter`.

    Raises:
        ValueError: an explicit argument is malformed, or ``yaml`` is asked for without PyYAML.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_bytes: int | None = None,
        backups: int | None = None,
        format: str | None = None,  # noqa: A002 - the setting's name
        service: str | None = None,
        env: str | None = None,
        version: str | None = None,
        tags: Mapping[str, str] | str | None = None,
        _environ: Mapping[str, str] | None = None,
        **options: Any,
    ) -> None:
        self.config: ExporterConfig = resolve_config(
            _environ, file_path=os.fspath(path) if path is not None else None,
            file_max_bytes=max_bytes, file_backups=backups, file_format=format,
            service=service, env=env, version=version, tags=tags, **options,
        )
        cfg = self.config
        self.path = os.path.abspath(cfg.file_path)
        self.max_bytes = cfg.file_max_bytes
        self.backups = cfg.file_backups
        self.format = cfg.file_format
        if self.format == "yaml":
            try:
                import yaml  # noqa: F401
            except ImportError:
                raise ValueError(
                    "file_format='yaml' needs PyYAML: pip install 'otel-dd-bridge[yaml]'"
                ) from None
        self._options = translate_options(cfg)
        self._cache = _Cache(self._options.max_cached_resources)
        self.counters = ExportCounters()
        self._log = RateLimitedLog(logger)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"DatadogFileExporter(path={self.path!r}, format={self.format!r})"

    def stats(self) -> dict[str, int]:
        """Counters: ``received``, ``exported`` (written), ``dropped.<reason>``."""
        return self.counters.snapshot()

    # -- file handling (under self._lock) -------------------------------------------------

    def _open(self) -> int:
        parent = os.path.dirname(self.path)
        if parent and not os.path.isdir(parent):
            os.makedirs(parent, mode=0o700, exist_ok=True)
        removed = _repair_tail(self.path, self.format)
        if removed:
            logger.warning("removed an incomplete last record (%d bytes) from %s", removed,
                           self.path)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._size = os.fstat(fd).st_size
        return fd

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.backups == 0:
            os.unlink(self.path)
            return
        oldest = f"{self.path}.{self.backups}"
        if os.path.exists(oldest):
            os.unlink(oldest)
        for i in range(self.backups - 1, 0, -1):
            src = f"{self.path}.{i}"
            if os.path.exists(src):
                os.replace(src, f"{self.path}.{i + 1}")
        os.replace(self.path, f"{self.path}.1")

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            self._fd = self._open()
        if self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
            self._fd = self._open()
        view = memoryview(data)
        try:
            while view:  # one write in practice; loop only for a short write (full disk, signal)
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError:
            # A full disk takes the part that fits, then ENOSPC: cut that part off again so
            # the file keeps whole records only and none of the batch (all counted dropped)
            # is on disk; the truncation also gives the space back.
            if len(view) < len(data):
                try:
                    os.ftruncate(self._fd, self._size)
                except OSError:
                    pass  # the next _open() repairs the tail
            raise
        self._size += len(data)

    # -- SpanExporter -----------------------------------------------------------------------

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Translate and append a batch; never raises."""
        n = len(spans)
        self.counters.add("received", n)
        try:
            with self._lock:
                if self._closed:
                    self.counters.drop("shutdown", n)
                    return SpanExportResult.FAILURE
                result = translate_spans_with_stats(spans, self._options, _cache=self._cache)
                if result.dropped:
                    self.counters.drop("invalid_span", result.dropped)
                sanitize_chunks(result.chunks)
                data = render_chunks(result.chunks, self.format)
                written = sum(len(c.spans) for c in result.chunks)
                try:
                    self._write(data)
                except OSError as exc:
                    self.counters.drop("write_error", written)
                    self._log.log(logging.ERROR, "write", "could not write %d spans to %s: %s",
                                  written, self.path, exc)
                    if self._fd is not None:
                        os.close(self._fd)
                        self._fd = None
                    return SpanExportResult.FAILURE
                self.counters.add("exported", written)
                return (SpanExportResult.FAILURE if result.dropped
                        else SpanExportResult.SUCCESS)
        except Exception:  # noqa: BLE001 - the host application must never see it
            self.counters.drop("internal_error", n)
            logger.debug("file export failed", exc_info=True)
            self._log.log(logging.ERROR, "export", "file export failed with an internal error")
            return SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Every export is written before it returns: always True."""
        return True

    def shutdown(self) -> None:
        """Close the file. Idempotent; later exports are dropped (``shutdown``)."""
        with self._lock:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
