#!/usr/bin/env bash
# Regenerate the committed Python modules of Shipyard's .proto files.
#
# The generator is pinned: grpcio-tools 1.76.0 writes protobuf 6.31.1 gencode, which runs on every
# protobuf runtime from 6.31.1 on (7.x included), so Shipyard installs beside clients that still pin
# protobuf < 7 (the kserve SDK does). A newer generator would raise that floor for every user.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="${GEN_PROTOS_VENV:-$root/build/gen-protos-venv}"
if [[ ! -x "$tools/bin/python" ]]; then
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q grpcio-tools==1.76.0
fi
cd "$root/src"
d=shipyard/protocol/grpc
"$tools/bin/python" -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. \
  "$d/kserve.proto" "$d/model_service.proto"
