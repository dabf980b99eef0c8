"""Disk full for the file recorder: a real 64 KiB tmpfs in a private mount namespace.

The recorder (:class:`~otel_dd_bridge.file_exporter.DatadogFileExporter`) runs in a child
process started with ``unshare -m`` (needs root, as CI has): the child mounts a 64 KiB tmpfs
on the test's temporary directory, so the kernel really answers ``ENOSPC``, and nothing of
the mount is visible to (or left behind for) the rest of the machine. The child reports
every ``export()`` result, the counters and the bytes of the files as JSON; the assertions
are made here.

Sizes, so the numbers below follow from them: a batch is 5 spans rendered to the same number
of bytes B (~2.3 KB; four-digit trace ids), ``max_bytes`` = 20 000 keeps 8 batches per file
(5 pages of 4 KiB), ``backups`` = 5, and tmpfs holds 16 pages. Three full files (15 pages) plus
one batch in the fourth (1 page) fit: 25 batches are written. The 26th needs a second page of
the fourth file: the kernel takes the bytes up to the end of the last page, then refuses the
rest with ENOSPC; the recorder must cut that part off again so only whole lines stay on disk.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from otel_dd_bridge.file_exporter import render_chunks
from otel_dd_bridge.translate import TranslateOptions, translate_spans
from tests.test_file_exporter import _batch

REPO = Path(__file__).resolve().parents[2]

TMPFS_BYTES = 64 * 1024
PAGE = 4096
MAX_BYTES = 20_000
BACKUPS = 5
SPANS = 5
EXTRA_FAILING = 3  # batches exported into the full disk after the first failure
AFTER_FREE = 10  # batches exported after the rotated backups were deleted

_CHILD = textwrap.dedent("""
    import json, os, sys
    from otel_dd_bridge.file_exporter import DatadogFileExporter
    from tests.test_file_exporter import _batch

    d, max_bytes, backups, spans, extra, after = sys.argv[1], *map(int, sys.argv[2:])
    path = os.path.join(d, "spans.jsonl")
    exp = DatadogFileExporter(path, max_bytes=max_bytes, backups=backups, _environ={})
    out = {"statvfs_blocks": os.statvfs(d).f_blocks * os.statvfs(d).f_frsize}

    def files():
        return {n: open(os.path.join(d, n), "rb").read().decode("utf-8", "replace")
                for n in sorted(os.listdir(d))}

    def export(i):
        try:
            return exp.export(_batch(i, n=spans)).name
        except BaseException as exc:  # what the test must never see
            return "RAISED " + repr(exc)

    i, results = 0, []
    while i < 200:  # far more than 64 KiB takes: the disk fills long before
        results.append(export(i))
        i += 1
        if results[-1] != "SUCCESS":
            break
    out["at_first_failure"] = files()
    out["stats_at_first_failure"] = exp.stats()
    for _ in range(extra):
        results.append(export(i))
        i += 1
    out["full_results"] = results
    out["stats_full"] = exp.stats()
    freed = [n for n in sorted(os.listdir(d)) if n != "spans.jsonl"]
    for n in freed:
        os.unlink(os.path.join(d, n))
    out["freed"] = freed
    out["after_results"] = [export(i + k) for k in range(after)]
    exp.shutdown()
    out["final"] = files()
    out["stats_final"] = exp.stats()
    print(json.dumps(out))
""")


def _records(text: str) -> list[dict]:
    """Every line of a recording, each a whole JSON object; fails on a cut record."""
    assert text == "" or text.endswith("\n"), repr(text[-80:])
    return [json.loads(line) for line in text.splitlines()]


def _trace_ids(text: str) -> list[int]:
    return [r["trace_id"] - 1000 for r in _records(text)][::SPANS]


def test_disk_full_drops_whole_batches_counted_and_recovers(tmp_path: Path) -> None:
    """64 KiB tmpfs, 5-span batches: 25 batches (125 spans) written, the 26th hits ENOSPC
    mid-write and 3 more into the full disk: 4 batches = 20 spans ``dropped.write_error``,
    FAILURE returned, nothing raised, only whole lines on disk at every point. Deleting the
    3 rotated backups frees the disk: the next 10 batches (50 spans) are all written (7 fill
    the current file, then it rotates). Totals: received 195, exported 175, dropped 20."""
    unshare = shutil.which("unshare")
    assert unshare, "util-linux unshare is installed by scripts/run.sh"
    size = len(render_chunks(translate_spans(_batch(0, n=SPANS), TranslateOptions())))
    per_file = MAX_BYTES // size
    pages_per_file = math.ceil(per_file * size / PAGE)
    full_files = (TMPFS_BYTES // PAGE) // pages_per_file
    left_pages = TMPFS_BYTES // PAGE - full_files * pages_per_file
    fit = full_files * per_file + (left_pages * PAGE) // size
    assert (size, per_file, full_files, fit) == (2331, 8, 3, 25)  # the numbers stated above
    assert fit * size % PAGE != 0  # the failing batch is cut by the kernel, not refused whole

    script = (f'mount -t tmpfs -o size={TMPFS_BYTES // 1024}k,mode=0700 otel-dd-diskfull "$1"'
              ' && shift && exec "$@"')
    proc = subprocess.run(
        [unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         str(tmp_path), sys.executable, "-c", _CHILD, str(tmp_path), str(MAX_BYTES),
         str(BACKUPS), str(SPANS), str(EXTRA_FAILING), str(AFTER_FREE)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert list(tmp_path.iterdir()) == []  # the tmpfs lived only in the child's namespace
    assert out["statvfs_blocks"] == TMPFS_BYTES

    # filling up: 25 SUCCESS, then FAILURE for the 26th and the 3 after it; nothing raised
    assert out["full_results"] == ["SUCCESS"] * fit + ["FAILURE"] * (1 + EXTRA_FAILING)
    s = out["stats_at_first_failure"]
    assert (s["received"], s["exported"], s["dropped.write_error"]) == (130, 125, 5)
    assert s["dropped.internal_error"] == 0
    # right after ENOSPC cut the 26th batch: whole lines only, none of batch 25 on disk
    files = out["at_first_failure"]
    assert sorted(files) == ["spans.jsonl", "spans.jsonl.1", "spans.jsonl.2", "spans.jsonl.3"]
    written = [b for n in sorted(files, reverse=True) for b in _trace_ids(files[n])]
    assert written == list(range(fit))  # oldest backup first: batches 0..24, in order
    assert files["spans.jsonl"].count("\n") == SPANS  # batch 24 alone in the newest file
    s = out["stats_full"]
    assert (s["received"], s["exported"], s["dropped.write_error"]) == (145, 125, 20)
    assert "No space left on device" in proc.stderr and "could not write 5 spans" in proc.stderr

    # space freed (the 3 backups deleted): the 10 following batches are all written
    assert out["freed"] == ["spans.jsonl.1", "spans.jsonl.2", "spans.jsonl.3"]
    assert out["after_results"] == ["SUCCESS"] * AFTER_FREE
    final = out["final"]
    first_after = fit + 1 + EXTRA_FAILING  # 29: batches 25..28 were dropped
    assert sorted(final) == ["spans.jsonl", "spans.jsonl.1"]
    assert _trace_ids(final["spans.jsonl.1"]) == [fit - 1, *range(first_after, first_after + 7)]
    assert _trace_ids(final["spans.jsonl"]) == list(range(first_after + 7, first_after + 10))
    s = out["stats_final"]
    assert (s["received"], s["exported"], s["dropped.write_error"]) == (195, 175, 20)
    assert s["received"] == s["exported"] + sum(v for k, v in s.items()
                                                if k.startswith("dropped."))
