#!/usr/bin/env bash
# Build the Go client example: generate Go code from Shipyard's .proto files, then compile
# clients/go/cmd/shipyard-go into OUT/bin/shipyard-go.
#
#   clients/go/build.sh [OUT]        (OUT defaults to build/go)
#
# Debian packages: golang-go protobuf-compiler protoc-gen-go protoc-gen-go-grpc
# golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev.
# No module proxy is needed: the build runs in GOPATH mode (GO111MODULE=off) with the generated
# packages in OUT/gopath and the gRPC / protobuf libraries where Debian puts them
# (/usr/share/gocode). The generated code is not committed: it is made from the one copy of the
# .proto files at every build, so it cannot drift from what the server speaks.
#
# PROTO_DIR (the folder holding kserve.proto and model_service.proto) may be given in the
# environment; by default it is found under src/shipyard.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$(mkdir -p "${1:-$root/build/go}" && cd "${1:-$root/build/go}" && pwd)"

if [[ -z "${PROTO_DIR:-}" ]]; then
  PROTO_DIR="$(dirname "$(find "$root/src/shipyard" -name kserve.proto -print -quit)")"
fi
for f in kserve.proto model_service.proto; do
  [[ -f "$PROTO_DIR/$f" ]] || { echo "build.sh: no $f in PROTO_DIR=$PROTO_DIR" >&2; exit 1; }
done

declare -A package_of=([go]=golang-go [protoc]=protobuf-compiler [protoc-gen-go]=protoc-gen-go
                       [protoc-gen-go-grpc]=protoc-gen-go-grpc)
missing=()
for tool in go protoc protoc-gen-go protoc-gen-go-grpc; do
  command -v "$tool" >/dev/null || missing+=("${package_of[$tool]}")
done
GOCODE="${GOCODE:-/usr/share/gocode}"
[[ -d "$GOCODE/src/google.golang.org/grpc" ]] || missing+=(golang-google-grpc-dev)
[[ -d "$GOCODE/src/google.golang.org/protobuf" ]] || missing+=(golang-google-protobuf-dev)
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "build.sh: missing Debian packages: ${missing[*]} (apt-get install ${missing[*]})" >&2
  exit 3
fi

# The .proto files carry no go_package option: the import paths are given here (M flags), so
# the files the Python stubs are generated from stay untouched.
gen="$out/gopath/src"
rm -rf "$gen/shipyard"
mkdir -p "$gen"
m="Mkserve.proto=shipyard/gen/inference,Mmodel_service.proto=shipyard/gen/modelservice"
protoc -I "$PROTO_DIR" \
  --go_out="$gen" --go_opt="$m" \
  --go-grpc_out="$gen" --go-grpc_opt="$m" \
  kserve.proto model_service.proto

export GO111MODULE=off GOFLAGS= GOPATH="$out/gopath:$GOCODE"
export GOCACHE="${GOCACHE:-$out/cache}"
mkdir -p "$out/bin"
cd "$here/cmd/shipyard-go"
go build -o "$out/bin/shipyard-go" .
echo "built $out/bin/shipyard-go"
