#!/usr/bin/env bash
# One entry point for the two README commands, from a fresh clone on a fresh machine.
#   scripts/run.sh demo   -> install, start a local Datadog test agent, trace, show the result
#   scripts/run.sh test   -> install everything the tests need, then ruff, mypy and pytest
# Virtualenvs live in .venvs/ (dev: the package + test tools; testagent: ddapm-test-agent,
# which pins an older opentelemetry-proto and so cannot share the SDK's venv; ddtrace: Datadog's
# own tracer for the cross-tracer tests; miniagent: Datadog's serverless mini-agent, the parity
# judge, run by the tests only inside a loopback-only network namespace).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
VENVS=$ROOT/.venvs
TEST_AGENT_VERSION=1.69.1
DDTRACE_VERSION=4.16.0
MINIAGENT_VERSION=0.19.0  # datadog-serverless-compat; keep in step with tests/harness/miniagent.py

quiet_pip() {  # pip, without this machine's noise about absent local indexes
  "$@" 2> >(grep -v "^WARNING: Location" >&2)
}

ensure_dev() {
  if [ ! -x "$VENVS/dev/bin/python" ]; then
    "$PY" -m venv "$VENVS/dev"
  fi
  quiet_pip "$VENVS/dev/bin/pip" install -q --disable-pip-version-check \
    -c scripts/constraints.txt -e ".[test]"
}

ensure_testagent() {
  if [ ! -x "$VENVS/testagent/bin/ddapm-test-agent" ]; then
    "$PY" -m venv "$VENVS/testagent"
    quiet_pip "$VENVS/testagent/bin/pip" install -q --disable-pip-version-check \
      "ddapm-test-agent==$TEST_AGENT_VERSION"
  fi
}

ensure_ddtrace() {  # Datadog's own tracer, for the cross-tracer tests only
  if [ ! -x "$VENVS/ddtrace/bin/ddtrace-run" ]; then
    "$PY" -m venv "$VENVS/ddtrace"
    quiet_pip "$VENVS/ddtrace/bin/pip" install -q --disable-pip-version-check \
      "ddtrace==$DDTRACE_VERSION" "flask>=3"
  fi
}

ensure_servers() {  # real Redis and PostgreSQL for the integration tests (tests/harness/servers.py)
  # /usr/local/bin/pg_ctl may exist without a server: look for the Debian server layout.
  local need=()
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)      # the TLS-verification test's certs
  command -v unshare >/dev/null 2>&1 || need+=(util-linux)   # the DNS-failure test's empty netns
  command -v valgrind >/dev/null 2>&1 || need+=(valgrind)     # benchmarks/instructions.py (smoke test)
  if [ ${#need[@]} -gt 0 ]; then
    echo "== apt-get install ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
  fi
}

ensure_miniagent() {  # Datadog's serverless mini-agent, the parity judge (tests/harness/miniagent.py)
  # It runs only inside a loopback-only network namespace made by the tests: that needs `ip`.
  if ! command -v ip >/dev/null 2>&1; then
    echo "== apt-get install iproute2"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2 >/dev/null
  fi
  if ! compgen -G "$VENVS/miniagent/lib/python*/site-packages/datadog_serverless_compat-$MINIAGENT_VERSION.dist-info" >/dev/null; then
    [ -x "$VENVS/miniagent/bin/pip" ] || "$PY" -m venv "$VENVS/miniagent"
    quiet_pip "$VENVS/miniagent/bin/pip" install -q --disable-pip-version-check \
      "datadog-serverless-compat==$MINIAGENT_VERSION"
  fi
}

cmd=${1:-test}
shift || true
case "$cmd" in
  demo)
    ensure_dev
    ensure_testagent
    exec "$VENVS/dev/bin/otel-dd-bridge" demo --test-agent "$VENVS/testagent/bin/ddapm-test-agent" "$@"
    ;;
  test)
    ensure_dev
    ensure_testagent
    ensure_ddtrace
    ensure_servers
    ensure_miniagent
    export OTEL_DD_BRIDGE_TEST_AGENT_VENV="$VENVS/testagent"
    export OTEL_DD_BRIDGE_DDTRACE_VENV="$VENVS/ddtrace"
    export OTEL_DD_BRIDGE_MINIAGENT_VENV="$VENVS/miniagent"
    echo "== ruff"; "$VENVS/dev/bin/ruff" check otel_dd_bridge tests examples benchmarks fuzz setup.py
    echo "== mypy"; "$VENVS/dev/bin/mypy" otel_dd_bridge
    if [ $# -eq 0 ]; then  # the pure-Python modules too (the full suite runs the compiled ones);
      # test_fastpack.py there also covers the compiled encoder reading the pure-Python model
      echo "== pytest, pure Python (OTEL_DD_BRIDGE_NO_EXTENSIONS=1): translation and encoding"
      OTEL_DD_BRIDGE_NO_EXTENSIONS=1 "$VENVS/dev/bin/python" -m pytest -q \
        tests/test_translate.py tests/test_hotpath.py tests/test_encoding.py \
        tests/test_encoding_strict.py tests/test_intake_encoding.py tests/test_stats.py \
        tests/test_fastpack.py tests/test_model.py tests/test_meta_tail.py
    fi
    echo "== pytest"; exec "$VENVS/dev/bin/python" -m pytest "$@"
    ;;
  bench)  # the benchmark suite (benchmarks/run.py): table of ratios, JSON with --json FILE
    ensure_dev
    ensure_ddtrace
    export OTEL_DD_BRIDGE_DDTRACE_VENV="$VENVS/ddtrace"
    exec "$VENVS/dev/bin/python" -m benchmarks.run "$@"
    ;;
  *)
    echo "usage: scripts/run.sh demo|test|bench [args]" >&2
    exit 2
    ;;
esac
