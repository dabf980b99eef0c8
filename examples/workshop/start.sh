#!/usr/bin/env bash
# Start the workshop under opentelemetry-instrument: taster (background) and matchmaker.
#   PATH=$PWD/.venvs/dev/bin:$PATH DD_TRACE_AGENT_URL=http://127.0.0.1:8126 \
#     bash examples/workshop/start.sh
# Environment (all optional):
#   DD_TRACE_AGENT_URL        where the Datadog Agent (or ddapm-test-agent) listens
#   DATABASE_URL              SQLAlchemy URL of the beer database (PostgreSQL recommended:
#                             postgresql+psycopg://user@127.0.0.1:5432/db); SQLite when unset
#   REDIS_URL                 donut store; when unset a private redis-server is started on
#                             127.0.0.1:${WORKSHOP_REDIS_PORT:-6390} and stopped on exit
#   MATCHMAKER_PORT/TASTER_PORT   5001 / 5002
# Ctrl-C (SIGINT) stops everything; the SDK flushes the last spans on the way out.
set -euo pipefail
set -m  # job control: background services get SIGINT (else bash makes them ignore it)
HERE=$(cd "$(dirname "$0")" && pwd)
command -v opentelemetry-instrument >/dev/null || {
  echo "opentelemetry-instrument not on PATH (use the project's .venvs/dev/bin)" >&2; exit 2; }

export OTEL_TRACES_EXPORTER=datadog OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none
export OTEL_PROPAGATORS=${OTEL_PROPAGATORS:-tracecontext,baggage,datadog}
# SQLAlchemy already traces every statement; the driver-level psycopg spans would duplicate
# each one (a second measured client span with the same resource) - see README.md.
export OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=${OTEL_PYTHON_DISABLED_INSTRUMENTATIONS:-psycopg,psycopg2}
export DD_ENV=${DD_ENV:-workshop} DD_VERSION=${DD_VERSION:-1.0}
export TASTER_PORT=${TASTER_PORT:-5002} MATCHMAKER_PORT=${MATCHMAKER_PORT:-5001}
export TASTER_URL=${TASTER_URL:-http://127.0.0.1:$TASTER_PORT}

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -n "${REDIS_DIR:-}" ] && rm -rf "$REDIS_DIR"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${REDIS_URL:-}" ]; then
  REDIS_DIR=$(mktemp -d)
  port=${WORKSHOP_REDIS_PORT:-6390}
  redis-server --port "$port" --bind 127.0.0.1 --dir "$REDIS_DIR" --save "" --appendonly no \
    >"$REDIS_DIR/redis.log" 2>&1 &
  pids+=($!)
  export REDIS_URL=redis://127.0.0.1:$port/0
fi

OTEL_SERVICE_NAME=taster opentelemetry-instrument python "$HERE/taster.py" &
pids+=($!)
OTEL_SERVICE_NAME=matchmaker opentelemetry-instrument python "$HERE/matchmaker.py" &
pids+=($!)
echo "workshop: matchmaker http://127.0.0.1:$MATCHMAKER_PORT, taster $TASTER_URL" >&2
wait -n "${pids[@]}"  # if any service dies, stop the others
