#!/usr/bin/env bash
# Coverage-guided fuzzing of translate + encode with atheris, for SECONDS (default 60).
# Makes .venvs/fuzz (atheris ships manylinux wheels for CPython 3.8-3.12 on x86_64/aarch64:
# no clang needed there; elsewhere pip builds it from source and needs clang + libFuzzer).
# Not run by CI. Crashing inputs are written to fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-60}"
PY="${PYTHON:-python3}"
if [ ! -x .venvs/fuzz/bin/python ]; then
  "$PY" -m venv .venvs/fuzz
  .venvs/fuzz/bin/pip install -q 'atheris>=2.3' -e . 'hypothesis>=6.100' 'pytest>=8'
fi
mkdir -p fuzz/artifacts fuzz/corpus
exec .venvs/fuzz/bin/python fuzz/fuzz_translate_encode.py fuzz/corpus \
  -max_total_time="$SECONDS_TO_RUN" -artifact_prefix=fuzz/artifacts/ -rss_limit_mb=4096 \
  -max_len=4096
