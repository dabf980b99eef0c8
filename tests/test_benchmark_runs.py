"""The benchmark suite must keep running (not a timed test): tiny sizes, well-formed output."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_benchmark_suite_runs_on_a_tiny_set(tmp_path) -> None:
    out = tmp_path / "bench.json"
    env = dict(os.environ)
    subprocess.run([sys.executable, "-m", "benchmarks.run", "--spans", "200", "--rounds", "1",
                    "--rps-seconds", "0.3", "--rps-rounds", "1", "--rps-connections", "2",
                    "--rss-seconds", "1", "--rss-rate", "400", "--instr-spans", "32",
                    "--json", str(out)],
                   check=True, capture_output=True, cwd=REPO, env=env, timeout=600)
    data = json.loads(out.read_text())
    assert data["spans"] == 200
    for fmt in ("v0.4", "v0.5", "intake"):
        assert data[f"export_{fmt}_us_per_span"] > 0
        assert data[f"encode_{fmt}_us_per_span"] > 0
        assert data[f"bytes_per_span_{fmt}"] > 100
    assert data["translate_us_per_span"] > 0 and data["pipeline_v0.4_us_per_span"] > 0
    assert data["ratios"]["pipeline_v0.4_vs_ddtrace_encode"] > 0
    assert data["otlp_export_us_per_span"] > 0 and data["bytes_per_span_otlp"] > 100
    assert data["ddtrace"]["encode_us_per_span"] > 0 and data["ddtrace"]["spans"] == 200
    assert data["ddtrace"]["interleaved"] is True and data["ddtrace"]["bytes_per_span"] > 100
    assert data["rps_none"] > 0 and data["rps_ours"] > 0 and data["rps_otlp"] > 0
    rss = data["rss"]
    assert rss["rss_peak_mb"] >= rss["rss_start_mb"] > 0 and rss["spans_produced"] > 0
    assert rss["exporter"]["received"] > 0
    r = data["ratios"]
    assert set(r) >= {"export_v0.4_vs_otlp_export", "export_v0.4_vs_ddtrace_encode",
                      "rps_ours_vs_otlp"}
    assert all(v > 0 for v in r.values())
    pure = data["pure_python"]  # the same CPU measures without the compiled accelerator
    assert pure["translate_us_per_span"] > 0 and pure["export_v0.4_us_per_span"] > 0
    assert pure["ratios"]["export_v0.4_vs_otlp_export"] > 0
    assert set(data["compiled"]) >= {"model", "translate"}
    instr = data["instructions"]  # valgrind's counts: ours (compiled, pure) and ddtrace's
    assert instr["spans"] == 32 and instr["ours_pipeline_v0.4_instr_per_span"] > 1000
    assert instr["pure_python.ours_pipeline_v0.4_instr_per_span"] > 1000
    assert instr["ddtrace_encode_instr_per_span"] > 1000 and instr["ours_vs_ddtrace"] > 0
    assert instr["ours_export_v0.4_instr_per_span"] > 1000 and instr["ours_export_vs_ddtrace"] > 0


def test_bench_translate_script_still_runs(tmp_path) -> None:
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_translate.py"), "--spans",
                    "200", "--rounds", "1", "--json", str(out)], check=True, capture_output=True)
    data = json.loads(out.read_text())
    assert data["spans"] == 200
    assert data["translate_us_per_span"] > 0 and data["bytes_per_span_v0.4"] > 0
