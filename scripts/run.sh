#!/usr/bin/env bash
# One entry point for the two README commands, from a fresh clone on a fresh machine.
#   scripts/run.sh demo   -> install, start a local Datadog test agent, trace, show the result
#   scripts/run.sh test   -> install everything the tests need, then ruff, mypy and pytest
# Virtualenvs live in .venvs/ (dev: the package + test tools; testagent: ddapm-test-agent,
# which pins an older opentelemetry-proto and so cannot share the SDK's venv; ddtrace: Datadog's
# own tracer for the cross-tracer tests).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
VENVS=$ROOT/.venvs
TEST_AGENT_VERSION=1.69.1
DDTRACE_VERSION=4.16.0

quiet_pip() {  # pip, without this machine's noise about absent local indexes
  "$@" 2> >(grep -v "^WARNING: Location" >&2)
}

ensure_dev() {
  if [ ! -x "$VENVS/dev/bin/python" ]; then
    "$PY" -m venv "$VENVS/dev"
  fi
  quiet_pip "$VENVS/dev/bin/pip" install -q --disable-pip-version-check -e ".[test]"
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
    export OTEL_DD_BRIDGE_TEST_AGENT_VENV="$VENVS/testagent"
    export OTEL_DD_BRIDGE_DDTRACE_VENV="$VENVS/ddtrace"
    echo "== ruff"; "$VENVS/dev/bin/ruff" check otel_dd_bridge tests examples
    echo "== mypy"; "$VENVS/dev/bin/mypy" otel_dd_bridge
    echo "== pytest"; exec "$VENVS/dev/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: scripts/run.sh demo|test [args]" >&2
    exit 2
    ;;
esac
