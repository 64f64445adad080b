#!/usr/bin/env bash
# Regenerate the committed Python modules of Shipyard's .proto files (needs grpcio-tools).
set -euo pipefail
cd "$(dirname "$0")/../src"
d=shipyard/serving/grpc/protos
python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. \
  "$d/kserve.proto" "$d/model_service.proto"
