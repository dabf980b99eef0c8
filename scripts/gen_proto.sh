#!/usr/bin/env bash
# Regenerate otel_dd_bridge/proto/agent_payload_pb2.py and .pyi from agent_payload.proto.
#
#   bash scripts/gen_proto.sh          regenerate in place
#   bash scripts/gen_proto.sh --check  regenerate into a temporary folder and fail if the
#                                      checked-in files differ (i.e. someone hand-edited them)
#
# protoc comes from grpcio-tools, installed in a throwaway virtualenv that is deleted at the
# end; nothing is added to the project's environments. GRPCIO_TOOLS is pinned because the
# generated code records the protobuf version it was made for and refuses older runtimes:
# grpcio-tools 1.74.0 bundles protoc 31.1, whose Python code ("gencode 6.31.1") runs on any
# protobuf runtime >= 6.31.1 (pyproject.toml declares protobuf>=6.31.1,<8). Changing the pin
# means changing that range too.
set -euo pipefail
cd "$(dirname "$0")/.."
GRPCIO_TOOLS=1.74.0
PY=${PYTHON:-python3}
SRC=otel_dd_bridge/proto/agent_payload.proto

check=0
if [ "${1:-}" = "--check" ]; then check=1; fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --disable-pip-version-check "grpcio-tools==$GRPCIO_TOOLS" \
  2> >(grep -v "^WARNING: Location" >&2)

out=.
if [ "$check" = 1 ]; then out="$tmp/out"; mkdir -p "$out"; fi
"$tmp/venv/bin/python" -m grpc_tools.protoc -I . --python_out="$out" --pyi_out="$out" "$SRC"

if [ "$check" = 1 ]; then
  status=0
  for f in agent_payload_pb2.py agent_payload_pb2.pyi; do
    if ! diff -u "otel_dd_bridge/proto/$f" "$out/otel_dd_bridge/proto/$f"; then status=1; fi
  done
  if [ "$status" = 0 ]; then echo "generated code is up to date"; fi
  exit "$status"
fi
echo "regenerated otel_dd_bridge/proto/agent_payload_pb2.py and .pyi (grpcio-tools $GRPCIO_TOOLS)"
