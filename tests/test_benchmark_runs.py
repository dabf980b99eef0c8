"""The benchmark script must keep running (not a timed test)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_translate_runs_on_a_tiny_set(tmp_path) -> None:
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_translate.py"), "--spans",
                    "200", "--rounds", "1", "--json", str(out)], check=True, capture_output=True)
    data = json.loads(out.read_text())
    assert data["spans"] == 200
    assert data["translate_us_per_span"] > 0 and data["bytes_per_span_v0.4"] > 0
