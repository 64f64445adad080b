#!/usr/bin/env bash
# Debian packages the test suite needs: libb64 for Triton's perf_analyzer (shipped inside the
# tritonclient wheel), a Java runtime for the PMML runtime (JPMML runs on the JVM), Fashion-MNIST
# (dataset-fashion-mnist: the IDX files under /usr/share/datasets/fashion-mnist that the image
# data tests read), Chromium (tests/serving/test_dashboard.py drives it with Playwright to test
# the web dashboard), and the Go toolchain, protoc and its Go plugins and the Go gRPC / protobuf
# libraries that build the Go client example (clients/go/build.sh, tests/clients/test_go_client.py).
# Installs only what is missing; needs root (CI runs as root). Extra packages
# may be named as arguments (make bench adds wrk, the light C load generator of the benchmarks).
set -euo pipefail
missing=()
go_client=(golang-go protobuf-compiler protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev
           golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev)
for pkg in libb64-0d default-jre-headless dataset-fashion-mnist chromium "${go_client[@]}" "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install_system_deps: need root to apt-get install ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
